import { context, SpanKind, trace } from '@opentelemetry/api';
import { RPC_SYSTEM, recordFailure, tracer } from '../rpc/tracing.ts';

/** The CLI's root span around one call, validation included, so every failure is traced. */
export async function withCallSpan<T>(method: string, n: number | string, work: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(
    `fib-rpc-client ${method}`,
    { kind: SpanKind.INTERNAL, attributes: { 'rpc.system': RPC_SYSTEM, 'rpc.method': method, 'fib.n': String(n) } },
    async (span) => {
      try {
        return await work();
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
