import { RpcSpans, recordFailure } from '@fib-rpc/rpc';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { SERVICE_NAME } from '../common/rpc-options.ts';

const { tracer } = new RpcSpans(SERVICE_NAME);

/**
 * The root span of a one-shot CLI call. It covers validation too, so that every failure,
 * invalid input included, marks the trace; the RPC core's call span is its child.
 */
export async function withCallSpan<T extends { error?: Error }>(
  method: string,
  n: string,
  work: () => Promise<T>,
): Promise<T> {
  return tracer.startActiveSpan(
    `fib-rpc-client ${method}`,
    { kind: SpanKind.INTERNAL, attributes: { 'rpc.system': SERVICE_NAME, 'rpc.method': method, 'fib.n': n } },
    async (span) => {
      try {
        const result = await work();
        if (result.error !== undefined) recordFailure(span, result.error);
        return result;
      } catch (err) {
        recordFailure(span, err as Error);
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

/** The trace id of the active span, if it is being recorded. */
export function activeTraceId(): string | undefined {
  const span = trace.getSpan(context.active());
  return span?.isRecording() ? span.spanContext().traceId : undefined;
}
