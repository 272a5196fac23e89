import { isSpanContextValid, context as otelContext, trace } from '@opentelemetry/api';
import type { ConsumeMessage } from 'amqplib';
import { asRpcError, type RpcError, UnknownMethodError } from '../errors.ts';
import { decodeRequest, readDeadline, requestContext } from '../protocol.ts';
import { type RpcSpans, recordFailure, SpanKind } from '../spans.ts';

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
 * Runs the handler in a span of its own; the reply comes at once for a synchronous handler
 * (no promise, no extra turn of the event loop) and as a promise for an asynchronous one.
 */
export function invoke(
  request: Extract<Admission, { kind: 'request' }>,
  msg: ConsumeMessage,
  redelivered: boolean,
  spans: RpcSpans,
  queue: string,
): Reply | Promise<Reply> {
  const { method } = request;
  const context: HandlerContext = {
    method,
    correlationId: msg.properties.correlationId as string | undefined,
    redelivered,
  };
  const parent = requestContext(msg, otelContext.active());
  const span = spans.tracer.startSpan(
    `handle ${method}`,
    { kind: SpanKind.INTERNAL, attributes: spans.attributes(method, queue) },
    parent,
  );
  const failed = (err: unknown): Reply => {
    const error = asRpcError(err);
    recordFailure(span, error);
    span.end();
    return { kind: 'error', error };
  };
  const { handler, parse } = request.route;
  let result: unknown;
  try {
    // Params are read inside the span, so that a refusal marks the handler's span too.
    const params = parse === undefined ? request.params : parse(request.params);
    // The handler runs in its span's context, except when the span carries no trace
    // (tracing off): then there is nothing to propagate and no context to make.
    result = isSpanContextValid(span.spanContext())
      ? otelContext.with(trace.setSpan(parent, span), handler, undefined, params, context)
      : handler(params, context);
  } catch (err) {
    return failed(err);
  }
  if (result instanceof Promise) {
    return result.then((value: unknown): Reply => {
      span.end();
      return { kind: 'result', value };
    }, failed);
  }
  span.end();
  return { kind: 'result', value: result };
}
