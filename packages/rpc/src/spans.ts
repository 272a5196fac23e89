import { type Attributes, type Span, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import type { RpcError } from './errors.ts';

/**
 * Spans of the RPC core, named after the service that uses it. Without a registered SDK the
 * API hands out non-recording spans, so this costs next to nothing when tracing is off.
 */
export class RpcSpans {
  readonly tracer: Tracer;
  readonly #system: string;

  constructor(serviceName: string) {
    this.tracer = trace.getTracer(serviceName);
    this.#system = serviceName;
  }

  attributes(method: string, queue: string, extra?: Attributes): Attributes {
    return { 'rpc.system': this.#system, 'rpc.method': method, 'rpc.service': queue, ...extra };
  }
}

/** Marks a span failed with the error's code, message and retryability. */
export function recordFailure(span: Span, err: RpcError<string> | Error): void {
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  const rpc = err as Partial<RpcError<string>>;
  if (rpc.code !== undefined) span.setAttribute('rpc.error.code', rpc.code);
  if (rpc.retryable !== undefined) span.setAttribute('rpc.error.retryable', rpc.retryable);
}

export { SpanKind };
