/**
 * Starts OpenTelemetry before any application module loads: bin/ imports this first, after
 * setting OTEL_SERVICE_NAME. amqplib is CommonJS, so instrumentation-amqplib patches it
 * through the require hook even though this project is ESM; no ESM loader hook is needed.
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
  const { startTracing } = await import('./sdk.ts');
  flush = startTracing();
}

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
