/**
 * Starts OpenTelemetry before any application module loads (node --import). amqplib is
 * CommonJS, so instrumentation-amqplib patches it through the require hook even though
 * this project is ESM; no ESM loader hook is needed for it.
 *
 * Configured only by the standard OTEL_* variables. With OTEL_SDK_DISABLED=true nothing is
 * loaded at all; with no OTEL_EXPORTER_OTLP_ENDPOINT spans are not exported.
 */
import { basename } from 'node:path';

type Flush = () => Promise<void>;
let flush: Flush = async () => {};

const entry = basename(process.argv[1] ?? '');
const defaultService = entry.includes('client') ? 'fib-rpc-client' : 'fib-rpc-server';

if (process.env.OTEL_SDK_DISABLED !== 'true') {
  process.env.OTEL_SERVICE_NAME ||= defaultService;
  const { startTracing } = await import('./tracing/sdk.ts');
  flush = startTracing();
}

/** Exports what is buffered and stops the SDK; safe to call when tracing is off. */
export function shutdownTelemetry(): Promise<void> {
  return flush();
}
