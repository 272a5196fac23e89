/**
 * A library user's tracing set-up: the OpenTelemetry SDK, configured by the standard OTEL_*
 * variables, with no instrumentation at all (instrumentation-amqplib is not loaded, nothing is
 * preloaded). Whatever joins the client's spans to the server's is @fib-rpc/rpc's own doing.
 */
import { NodeSDK } from '@opentelemetry/sdk-node';

process.env.OTEL_METRICS_EXPORTER = 'none';
process.env.OTEL_LOGS_EXPORTER = 'none';
const sdk = new NodeSDK({ instrumentations: [] });
sdk.start();

export const stopTracing = (): Promise<void> => sdk.shutdown();
