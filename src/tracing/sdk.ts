import { AmqplibInstrumentation } from '@opentelemetry/instrumentation-amqplib';
import { NodeSDK } from '@opentelemetry/sdk-node';

/** Starts the NodeSDK with amqplib instrumentation; returns the flush-and-stop function. */
export function startTracing(): () => Promise<void> {
  // Export failures (no collector on a laptop) go to the SDK's diag logger, which stays
  // silent unless OTEL_LOG_LEVEL asks for it: no error spam.
  // Straight to Jaeger there is nobody to take metrics or logs over OTLP.
  process.env.OTEL_METRICS_EXPORTER ||= 'none';
  process.env.OTEL_LOGS_EXPORTER ||= 'none';
  const sdk = new NodeSDK({ instrumentations: [new AmqplibInstrumentation()] });
  sdk.start();
  return () => sdk.shutdown().catch(() => {});
}
