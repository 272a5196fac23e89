import { DiagLogLevel, diag } from '@opentelemetry/api';
import { AmqplibInstrumentation } from '@opentelemetry/instrumentation-amqplib';
import { NodeSDK } from '@opentelemetry/sdk-node';

/** Starts the NodeSDK with amqplib instrumentation; returns the flush-and-stop function. */
export function startTracing(): () => Promise<void> {
  // No collector reachable is normal on a laptop: keep the SDK's own complaints quiet.
  diag.setLogger({ error() {}, warn() {}, info() {}, debug() {}, verbose() {} }, DiagLogLevel.NONE);
  process.env.OTEL_METRICS_EXPORTER ||= 'none';
  process.env.OTEL_LOGS_EXPORTER ||= 'none';
  if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT && !process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
    process.env.OTEL_TRACES_EXPORTER ||= 'none';
  }
  const sdk = new NodeSDK({ instrumentations: [new AmqplibInstrumentation()] });
  sdk.start();
  return () => sdk.shutdown().catch(() => {});
}
