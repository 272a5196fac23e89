/**
 * Exports the spans a benchmark process still buffers before it exits, whatever set the SDK
 * up (fib-rpc's telemetry start-up or the stock preload): the sink counts every span of
 * every call, so a process must not leave its last batch behind.
 */
export async function flushTracing(capMs = 5000): Promise<void> {
  const { trace } = await import('@opentelemetry/api');
  const provider = trace.getTracerProvider() as { getDelegate?: () => unknown };
  const sdk = (provider.getDelegate?.() ?? provider) as { forceFlush?: () => Promise<void> };
  if (typeof sdk.forceFlush !== 'function') return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    sdk.forceFlush().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, capMs);
    }),
  ]);
  clearTimeout(timer);
}
