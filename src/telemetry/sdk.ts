import { AmqplibInstrumentation } from '@opentelemetry/instrumentation-amqplib';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { ProtobufSpanExporter } from './span-exporter.ts';

/**
 * Whether spans go out the default way, OTLP over HTTP in protobuf: then fib-rpc's own
 * exporter (same bytes, a cheaper encoder) takes the stock one's place. gRPC, OTLP/JSON,
 * Zipkin or the console exporter stay exactly as the SDK sets them up from OTEL_*.
 */
function defaultOtlpHttp(env: NodeJS.ProcessEnv): boolean {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? 'otlp').split(',').map((s) => s.trim());
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
  return exporters.length === 1 && exporters[0] === 'otlp' && protocol === 'http/protobuf';
}

/** Starts the NodeSDK with amqplib instrumentation; returns the flush-and-stop function. */
export function startTracing(): () => Promise<void> {
  // Export failures (no collector on a laptop) go to the SDK's diag logger, which stays
  // silent unless OTEL_LOG_LEVEL asks for it: no error spam.
  // Straight to Jaeger there is nobody to take metrics or logs over OTLP.
  process.env.OTEL_METRICS_EXPORTER ||= 'none';
  process.env.OTEL_LOGS_EXPORTER ||= 'none';
  // Under load (thousands of calls a second, six spans each) the batch processor's default
  // of 512 spans per export meant dozens of exports a second; 1024 cut the traced client's
  // and server's CPU per call by a few percent in the benchmark (bench/README.md). Larger
  // batches did no better and hurt the p99: a batch is serialised in one go on the event
  // loop. The queue holds 32 batches: the batch processor drops what does not fit while an
  // export is under way, and a collector that stalls for a second must cost no spans at
  // 10,000 calls a second. Lightly loaded nothing changes: a batch still leaves every
  // OTEL_BSP_SCHEDULE_DELAY (5 s). OTEL_BSP_* set in the environment win.
  process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE ||= '1024';
  process.env.OTEL_BSP_MAX_QUEUE_SIZE ||= '32768';
  const sdk = new NodeSDK({
    instrumentations: [new AmqplibInstrumentation()],
    ...(defaultOtlpHttp(process.env) ? { traceExporter: new ProtobufSpanExporter() } : {}),
  });
  sdk.start();
  return () => sdk.shutdown().catch(() => {});
}
