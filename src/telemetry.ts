/**
 * Starts OpenTelemetry before any application module loads (node --import). amqplib is
 * CommonJS, so instrumentation-amqplib patches it through the require hook even though
 * this project is ESM; no ESM loader hook is needed for it.
 *
 * Configured only by the standard OTEL_* variables. Tracing starts when an OTLP endpoint
 * (or another OTEL_TRACES_EXPORTER) is configured; with OTEL_SDK_DISABLED=true or with
 * nothing configured the SDK is not even loaded, so tracing costs nothing.
 */
let flush: () => Promise<void> = async () => {};

const env = process.env;
const wanted =
  env.OTEL_SDK_DISABLED !== 'true' &&
  Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_TRACES_EXPORTER);

if (wanted) {
  // The entry is bin/fib-rpc-client.js or dist/client/main.js for the client: its last two
  // path segments name it either way.
  const entry = (process.argv[1] ?? '').split(/[\\/]/).slice(-2).join('/');
  env.OTEL_SERVICE_NAME ||= entry.includes('client') ? 'fib-rpc-client' : 'fib-rpc-server';
  const { startTracing } = await import('./tracing/sdk.ts');
  flush = startTracing();
}

/** True when spans are recorded and exported. */
export const tracingEnabled = wanted;

/**
 * Exports what is buffered and stops the SDK, waiting at most `capMs`: a collector that
 * does not answer must not hold a process (or a one-shot CLI) open.
 */
export function shutdownTelemetry(capMs = 3000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, capMs);
    timer.unref();
    flush().then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
