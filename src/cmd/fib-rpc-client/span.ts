import { context, SpanKind, trace } from '@opentelemetry/api';
import { RPC_SYSTEM, recordFailure, tracer } from '../../rpc/spans.ts';
import { ExitWith } from './exit-codes.ts';

/**
 * The root span of a one-shot CLI call. It covers validation too, so that every failure,
 * invalid input included, marks the trace; the RPC core's call span is its child.
 */
export async function withCallSpan<T>(method: string, n: string, work: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(
    `fib-rpc-client ${method}`,
    { kind: SpanKind.INTERNAL, attributes: { 'rpc.system': RPC_SYSTEM, 'rpc.method': method, 'fib.n': n } },
    async (span) => {
      try {
        return await work();
      } catch (err) {
        recordFailure(span, err instanceof ExitWith ? err.reason : (err as Error));
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
