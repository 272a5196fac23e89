import { RpcError } from '@fib-rpc/rpc';
import { context, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { SERVICE_NAME } from '../common/rpc-options.ts';

const tracer = trace.getTracer(SERVICE_NAME);

/** Marks the run's root span failed, with the RPC error's code when it is one (the call's own span has the rest). */
function failed(span: Span, err: Error): void {
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  if (err instanceof RpcError) span.setAttribute('rpc.error.code', err.code);
}

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
        if (result.error !== undefined) failed(span, result.error);
        return result;
      } catch (err) {
        failed(span, err as Error);
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
