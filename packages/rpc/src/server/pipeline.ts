import { type Context, context as otelContext, type Span, trace } from '@opentelemetry/api';
import type { ConsumeMessage } from 'amqplib';
import { asRpcError, type RpcError, UnknownMethodError } from '../errors.ts';
import { decodeRequest, readDeadline, requestTrace } from '../protocol.ts';
import { type RpcSpans, recordFailure, SpanKind, traced } from '../spans.ts';

/**
 * A delivery's way through the server, one step each: admit it (a request for a handler,
 * a refusal to answer with an error, or a request whose caller stopped waiting), invoke
 * the handler in its span, and send the Reply (rpc-server.ts).
 */

export interface HandlerContext {
  method: string;
  correlationId: string | undefined;
  /** Delivered before: the broker's redelivered flag, or a count of ours on a classic queue. */
  redelivered: boolean;
}

/** Takes the request's params (parsed by its method's definition, if any) and returns the result or a promise of it. */
export type Handler = (params: unknown, context: HandlerContext) => unknown;

/** A registered handler and the parse step of its method definition, if any. */
export interface Route {
  handler: Handler;
  parse: ((params: unknown) => unknown) | undefined;
}

/** Reported as the method of requests naming an unregistered one: client input must not mint labels. */
export const UNKNOWN_METHOD_LABEL = '_unknown';

/** The method a request is counted under: its own when registered, else UNKNOWN_METHOD_LABEL. */
export function methodLabel(method: string, routes: ReadonlyMap<string, Route>): string {
  return routes.has(method) ? method : UNKNOWN_METHOD_LABEL;
}

export type Admission =
  | { kind: 'request'; method: string; plainText: boolean; params: unknown; route: Route }
  | { kind: 'refused'; method: string; plainText: boolean; error: RpcError<string> }
  /** Its x-deadline has passed: nobody waits for the answer. */
  | { kind: 'expired'; method: string };

export type Reply = { kind: 'result'; value: unknown } | { kind: 'error'; error: RpcError<string> };

/** What the server tells apart about a request before doing any work. */
export function admit(
  msg: ConsumeMessage,
  routes: ReadonlyMap<string, Route>,
  defaultMethod: string,
  maxRequestBytes: number,
): Admission {
  const deadline = readDeadline(msg);
  if (deadline !== undefined && deadline < Date.now()) return { kind: 'expired', method: defaultMethod };
  try {
    const request = decodeRequest(msg, defaultMethod, maxRequestBytes);
    const { plainText } = request;
    const route = routes.get(request.method);
    if (route === undefined) {
      return {
        kind: 'refused',
        method: UNKNOWN_METHOD_LABEL,
        plainText,
        error: new UnknownMethodError(request.method),
      };
    }
    return { kind: 'request', method: request.method, plainText, params: request.params, route };
  } catch (err) {
    // The body could not be read: answered in JSON, and counted under the default method.
    return { kind: 'refused', method: defaultMethod, plainText: false, error: asRpcError(err) };
  }
}

/**
 * Runs the handler in the request's server span; the reply comes at once for a synchronous
 * handler (no promise, no extra turn of the event loop) and as a promise for an asynchronous
 * one. The server span is instrumentation-amqplib's process span where it is loaded (the core
 * adds the RPC attributes and the handler's failure to it; the instrumentation ends it when
 * the request is acked), else the core's own `handle <method>`, ended with the handler. Its
 * context goes on the delivery, for the reply to carry.
 */
export function invoke(
  request: Extract<Admission, { kind: 'request' }>,
  delivery: { msg: ConsumeMessage; redelivered: boolean; traceContext?: Context | undefined },
  spans: RpcSpans,
  queue: string,
): Reply | Promise<Reply> {
  const { method } = request;
  const { msg } = delivery;
  const context: HandlerContext = {
    method,
    correlationId: msg.properties.correlationId as string | undefined,
    redelivered: delivery.redelivered,
  };
  const active = otelContext.active();
  const { parent, consumer } = requestTrace(msg, active);
  let span: Span;
  if (consumer !== undefined) {
    span = consumer;
    spans.enrich(span, method, queue, context.correlationId);
  } else {
    span = spans.tracer.startSpan(
      `handle ${method}`,
      { kind: SpanKind.SERVER, attributes: spans.attributes(method, queue) },
      parent,
    );
  }
  // The consumer span is ended by the instrumentation, at the ack; the core's own here.
  const end = consumer === undefined;
  const failed = (err: unknown): Reply => {
    const error = asRpcError(err);
    recordFailure(span, error);
    if (end) span.end();
    return { kind: 'error', error };
  };
  const { handler, parse } = request.route;
  let result: unknown;
  try {
    // Params are read inside the span, so that a refusal marks the server span too.
    const params = parse === undefined ? request.params : parse(request.params);
    // The handler runs in its span's context, except when the span carries no trace
    // (tracing off): then there is nothing to propagate and no context to make.
    if (traced(span)) {
      const spanContext = consumer !== undefined ? active : trace.setSpan(parent, span);
      delivery.traceContext = spanContext;
      result = otelContext.with(spanContext, handler, undefined, params, context);
    } else {
      result = handler(params, context);
    }
  } catch (err) {
    return failed(err);
  }
  if (result instanceof Promise) {
    return result.then((value: unknown): Reply => {
      if (end) span.end();
      return { kind: 'result', value };
    }, failed);
  }
  if (end) span.end();
  return { kind: 'result', value: result };
}

/**
 * A request refused before its handler (unknown method, unreadable body): where
 * instrumentation-amqplib's process span is the request's, it gets the RPC attributes and the
 * failure, and its context goes on the delivery for the error reply to carry. Without the
 * instrumentation there is no server span for a refusal, as there is no handler.
 */
export function markRefused(
  delivery: { msg: ConsumeMessage; traceContext?: Context | undefined },
  spans: RpcSpans,
  method: string,
  queue: string,
  error: RpcError<string>,
): void {
  const active = otelContext.active();
  const { consumer } = requestTrace(delivery.msg, active);
  if (consumer === undefined) return;
  spans.enrich(consumer, method, queue, delivery.msg.properties.correlationId);
  recordFailure(consumer, error);
  delivery.traceContext = active;
}
