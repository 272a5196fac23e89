import { type Attributes, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { RpcError } from './errors.ts';

/**
 * Spans of the RPC core. Without a registered SDK the API hands out non-recording spans,
 * so this costs next to nothing when tracing is off.
 */
export const tracer = trace.getTracer('fib-rpc');

export const RPC_SYSTEM = 'fib-rpc';

export function callAttributes(method: string, queue: string, extra?: Attributes): Attributes {
  return { 'rpc.system': RPC_SYSTEM, 'rpc.method': method, 'rpc.service': queue, ...extra };
}

/** Marks a span failed with the error's code, message and retryability. */
export function recordFailure(span: Span, err: RpcError | Error): void {
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  const rpc = err as Partial<RpcError>;
  if (rpc.code !== undefined) span.setAttribute('rpc.error.code', rpc.code);
  if (rpc.retryable !== undefined) span.setAttribute('rpc.error.retryable', rpc.retryable);
}

export { SpanKind };
