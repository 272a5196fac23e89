import {
  type Attributes,
  type Context,
  createContextKey,
  isSpanContextValid,
  context as otelContext,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { RpcError } from './errors.ts';

/**
 * Spans of the RPC core, named after the service that uses it. Without a registered SDK the
 * API hands out non-recording spans, so this costs next to nothing when tracing is off.
 *
 * One RPC is one trace of two spans, with or without instrumentation-amqplib (loaded in the
 * programs, perhaps not in a library user's app); see packages/rpc/README.md:
 *
 *   call <method>              client, SpanKind.CLIENT: the RPC client span, which is also the
 *                              request's send span (messaging.operation.type "send": a producer
 *                              that waits for the answer is a CLIENT in the messaging
 *                              conventions); the core injects its context into the request.
 *   └ <queue> process          server, the instrumentation's CONSUMER span of the request,
 *                              enriched by the core (rpc.*, messaging.operation.type "process",
 *                              the handler's failure); without the instrumentation the core's
 *                              own `handle <method>` (SpanKind.SERVER) in its place.
 *
 * The instrumentation's publish spans of the request and the reply are not made: the core
 * publishes with tracing suppressed (see untracedPublish), because the client span already
 * is the request's send span and both messages already carry the trace context the core
 * wrote; a publish span would repeat the client span's attributes. Nor is its process span
 * of the reply at the client (see untracedConsume): the call span ends as the reply arrives.
 * The reply still carries the server span's context, for a client that does trace it.
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

  /**
   * What the core adds to the instrumentation's process span of a request: the RPC
   * attributes, and the current messaging conventions' names for what the instrumentation
   * records under obsolete ones (`messaging.operation`, `messaging.conversation_id`).
   */
  enrich(span: Span, method: string, queue: string, correlationId: unknown): void {
    span.setAttributes({
      'rpc.system': this.#system,
      'rpc.method': method,
      'rpc.service': queue,
      'messaging.operation.type': 'process',
      ...(typeof correlationId === 'string' ? { 'messaging.message.conversation_id': correlationId } : {}),
    });
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

/**
 * The SDK's own "suppress tracing" key (@opentelemetry/core's suppressTracing, which the
 * exporters use so that their HTTP requests make no spans). createContextKey is
 * Symbol.for(description), so this is the same key without depending on the SDK; without
 * an SDK nothing reads it.
 */
const SUPPRESS_TRACING = createContextKey('OpenTelemetry SDK Context Key SUPPRESS_TRACING');

/**
 * `publish(...args)` in `traceContext` with tracing suppressed: instrumentation-amqplib's
 * publish wrapper then gets a non-recording span from the SDK, and its injection (which the
 * SDK's propagators skip under suppression) leaves the traceparent the core wrote in the
 * headers as it is. Only the publish runs suppressed; nothing it calls back into later does.
 */
export function untracedPublish<A extends unknown[], R>(
  traceContext: Context,
  channel: { publish(...args: A): R },
  ...args: A
): R {
  return otelContext.with(traceContext.setValue(SUPPRESS_TRACING, true), channel.publish, channel, ...args);
}

/**
 * `channel.consume(...args)` past instrumentation-amqplib's wrapper, which would open a
 * process span for every message. The instrumentations wrap with shimmer, which keeps the
 * function it wrapped as `__original` (its documented contract); unwrapped, this is the plain
 * consume. For the client's replies: the call span already ends when the reply arrives, so a
 * span of the reply's processing would only repeat it.
 */
export function untracedConsume<A extends unknown[], R>(channel: { consume(...args: A): R }, ...args: A): R {
  const consume = channel.consume as ((...a: A) => R) & { __original?: (...a: A) => R };
  return (consume.__original ?? consume).apply(channel, args);
}

/** Whether a span carries a trace (it does not when tracing is off or unsampled). */
export function traced(span: Span): boolean {
  return isSpanContextValid(span.spanContext());
}

export { SpanKind };
