import { type Context, isSpanContextValid, propagation, type Span, trace } from '@opentelemetry/api';
import type { ConsumeMessage, Message, Options } from 'amqplib';
import { InvalidRequestError, ProtocolError, RemoteError, type RpcError, UnsupportedVersionError } from './errors.ts';

/**
 * The wire format, documented in README.md ("Wire format") so that a client in any
 * language can talk to the server.
 *
 * Request:  published to the default exchange with routing key = the work queue.
 *   properties: correlation_id, reply_to, content_type application/json, type = method,
 *               message_id = request id (kept across retries), expiration = timeout in ms
 *   headers:    x-rpc-version: 1, x-deadline: epoch ms after which nobody waits, traceparent
 *               A server refuses a request of a newer major version (UNSUPPORTED_VERSION) and
 *               reads one without the header as its own version (see requestVersion).
 *   body:       JSON params, e.g. {"n":30}; a bare integer body such as 30 is accepted too
 * Reply:    published to the default exchange with routing key = reply_to.
 *   properties: correlation_id, content_type, type = "result" | "error"
 *   body:       {"result": <value>} or {"error": {"code","message","retryable","type"}}; a reply
 *               that is not so is a ProtocolError at the client (decodeReply)
 *   A request whose content type is not application/json (e.g. the classic tutorial's
 *   text/plain "30") gets a plain-text body: the result itself, or "error: CODE: message".
 */
export const PROTOCOL_VERSION = 1;
export const JSON_CONTENT_TYPE = 'application/json';
export const TEXT_CONTENT_TYPE = 'text/plain';
export const HEADER_VERSION = 'x-rpc-version';
export const HEADER_DEADLINE = 'x-deadline';
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';
export const REPLY_TYPE_RESULT = 'result';
export const REPLY_TYPE_ERROR = 'error';

export interface ErrorEnvelope {
  code: string;
  message: string;
  retryable: boolean;
  type: string;
}

export interface DecodedRequest {
  method: string;
  params: unknown;
  /** The caller spoke plain text, so the reply is plain text too. */
  plainText: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Why a request is unusable, or null when its body may be parsed. */
export function checkRequestEnvelope(msg: Message, maxRequestBytes: number): string | null {
  if (msg.content.length > maxRequestBytes) {
    return `request body is ${msg.content.length} bytes, the limit is ${maxRequestBytes}`;
  }
  const type = msg.properties.contentType as string | undefined;
  if (type !== undefined && type !== JSON_CONTENT_TYPE && type !== TEXT_CONTENT_TYPE) {
    return `unsupported content type "${type}": use ${JSON_CONTENT_TYPE}`;
  }
  return null;
}

/** The method a request names in its AMQP `type`, or `defaultMethod` when it names none. */
export function requestedMethod(msg: Message, defaultMethod: string): string {
  return (msg.properties.type as string | undefined) || defaultMethod;
}

/**
 * The major version of the wire format a request speaks: its x-rpc-version header (a number,
 * or a string such as "1" or "1.2"), or PROTOCOL_VERSION when it has none: clients older than
 * the header, and plain AMQP clients such as the classic tutorial's, send none and speak
 * version 1. Throws InvalidRequestError for a header that is no version.
 */
export function requestVersion(msg: Message): number {
  const raw: unknown = msg.properties.headers?.[HEADER_VERSION];
  if (raw === undefined || raw === null) return PROTOCOL_VERSION;
  const text = typeof raw === 'number' || typeof raw === 'string' ? String(raw) : '';
  const major = /^(\d{1,9})(?:\.\d{1,9})*$/.exec(text)?.[1];
  if (major === undefined) throw new InvalidRequestError(`${HEADER_VERSION} must be a version number such as 1`);
  return Number(major);
}

/** Refuses a request of a newer major version than this side speaks (UnsupportedVersionError). */
export function checkRequestVersion(msg: Message): void {
  const version = requestVersion(msg);
  if (version > PROTOCOL_VERSION) throw new UnsupportedVersionError(version, PROTOCOL_VERSION);
}

/**
 * Parses a request: its version first (a newer one may mean anything by the rest), then its
 * envelope and body. Throws InvalidRequestError or UnsupportedVersionError; never anything else.
 */
export function decodeRequest(msg: Message, defaultMethod: string, maxRequestBytes: number): DecodedRequest {
  checkRequestVersion(msg);
  const plainText = msg.properties.contentType !== JSON_CONTENT_TYPE;
  const problem = checkRequestEnvelope(msg, maxRequestBytes);
  if (problem) throw new InvalidRequestError(problem);
  const method = requestedMethod(msg, defaultMethod);
  let text: string;
  try {
    text = utf8.decode(msg.content);
  } catch {
    throw new InvalidRequestError('request body is not valid UTF-8');
  }
  let params: unknown;
  try {
    params = JSON.parse(text);
  } catch {
    throw new InvalidRequestError('request body is not valid JSON');
  }
  return { method, params, plainText };
}

export function encodeRequest(params: unknown): Buffer {
  return Buffer.from(JSON.stringify(params));
}

/** What the properties of one request are made from: an attempt of a call (client/attempt.ts). */
export interface OutgoingRequest {
  /** The call's correlation id, also its message_id: kept across retries. */
  readonly id: string;
  readonly method: string;
  /** Epoch ms after which nobody waits for the reply (x-deadline). */
  readonly deadline: number;
  /** The call's trace, to carry in the headers (W3C traceparent, tracestate); undefined: tracing is off. */
  readonly traceContext: Context | undefined;
}

/** The AMQP properties and headers of a request that expires in `expiresInMs`. */
export function requestOptions(request: OutgoingRequest, expiresInMs: number): Options.Publish {
  const headers: Record<string, unknown> = { [HEADER_VERSION]: PROTOCOL_VERSION, [HEADER_DEADLINE]: request.deadline };
  // The trace context, through whatever propagator the application registered (the SDK's
  // default: W3C traceparent and tracestate, and baggage). The publish runs with tracing
  // suppressed (untracedPublish), so instrumentation-amqplib, where it is loaded, neither adds
  // a publish span nor injects over what is written here.
  if (request.traceContext !== undefined) propagation.inject(request.traceContext, headers);
  return {
    correlationId: request.id,
    replyTo: DIRECT_REPLY_TO,
    messageId: request.id,
    type: request.method,
    contentType: JSON_CONTENT_TYPE,
    // The broker drops the request once nobody waits for it, so no server computes it.
    expiration: String(expiresInMs),
    // Unroutable (no queue, so no server): the broker returns it and the call fails at once.
    mandatory: true,
    headers,
  };
}

/**
 * The context a request's work continues: the trace its headers carry, unless the active
 * context already continues that trace. instrumentation-amqplib, where it is loaded, extracts
 * the same headers itself and runs the consumer inside its own process span, a child of the
 * client's call span: that span is then active here, in the same trace, and is kept.
 * Without the instrumentation the active context is the consumer's (none, or whatever was
 * active when the server started): the server's span then continues the client's call
 * straight from the headers. A request without a trace leaves the active context as it is.
 */
export function requestContext(msg: Message, active: Context): Context {
  return requestTrace(msg, active).parent;
}

/**
 * requestContext, and instrumentation-amqplib's process span of the request when that is
 * the span it keeps (the active span, recording, in the trace the headers carry): the span
 * the core then enriches rather than starting one of its own beside it.
 */
export function requestTrace(msg: Message, active: Context): { parent: Context; consumer: Span | undefined } {
  const headers = msg.properties.headers;
  if (headers === undefined) return { parent: active, consumer: undefined };
  const sent = propagation.extract(active, headers);
  const sender = trace.getSpanContext(sent);
  const span = trace.getSpan(active);
  // Not remote: the active span's own context came back, the headers carry no trace, and
  // nothing says the active span is this request's (it may be one active when the server
  // started). A propagator marks what it extracts as remote.
  if (sender === undefined || !isSpanContextValid(sender) || sender.isRemote !== true) {
    return { parent: active, consumer: undefined };
  }
  if (span === undefined || span.spanContext().traceId !== sender.traceId) return { parent: sent, consumer: undefined };
  return { parent: active, consumer: span.isRecording() ? span : undefined };
}

export function encodeResult(result: unknown, plainText: boolean): Buffer {
  if (plainText) return Buffer.from(typeof result === 'string' ? result : JSON.stringify(result));
  return Buffer.from(`{"result":${JSON.stringify(result)}}`);
}

export function toEnvelope(err: RpcError<string>): ErrorEnvelope {
  return { code: err.code, message: err.message, retryable: err.retryable, type: err.name };
}

export function encodeError(envelope: ErrorEnvelope, plainText: boolean): Buffer {
  if (plainText) return Buffer.from(`error: ${envelope.code}: ${envelope.message}`);
  return Buffer.from(JSON.stringify({ error: envelope }));
}

/** A reply's properties; `traceContext`, the server span's, goes in its headers for the client to continue. */
export function replyOptions(
  request: ConsumeMessage,
  plainText: boolean,
  type: string,
  mandatory: boolean,
  traceContext?: Context,
): Options.Publish {
  let headers: Record<string, unknown> | undefined;
  if (traceContext !== undefined) {
    headers = {};
    propagation.inject(traceContext, headers);
  }
  return {
    correlationId: request.properties.correlationId as string,
    contentType: plainText ? TEXT_CONTENT_TYPE : JSON_CONTENT_TYPE,
    type,
    headers,
    mandatory,
  };
}

/**
 * A reply as the client sees it: the value, or the server's error as a RemoteError to throw.
 * Anything else (another content type, a body that is not JSON, neither "result" nor a
 * whole "error" envelope) throws a ProtocolError: it is no answer of a server of ours.
 */
export function decodeReply(msg: Message): unknown {
  const type = msg.properties.contentType as string | undefined;
  if (type !== undefined && type !== JSON_CONTENT_TYPE) {
    throw new ProtocolError(`reply has content type "${type.slice(0, 100)}", expected ${JSON_CONTENT_TYPE}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(msg.content.toString('utf8'));
  } catch {
    throw new ProtocolError('reply body is not valid JSON');
  }
  if (body !== null && typeof body === 'object') {
    if ('result' in body) return body.result;
    if ('error' in body) throw remoteError(body.error);
  }
  throw new ProtocolError('reply has neither "result" nor "error"');
}

/** An error envelope as the RemoteError it stands for; one without all its fields is a ProtocolError. */
function remoteError(envelope: unknown): RemoteError | ProtocolError {
  const e = (envelope !== null && typeof envelope === 'object' ? envelope : {}) as Partial<Record<string, unknown>>;
  const missing = [
    typeof e.code === 'string' ? '' : 'code',
    typeof e.message === 'string' ? '' : 'message',
    typeof e.retryable === 'boolean' ? '' : 'retryable',
    typeof e.type === 'string' ? '' : 'type',
  ].filter((field) => field !== '');
  if (missing.length > 0) return new ProtocolError(`reply error lacks ${missing.join(', ')}`);
  return new RemoteError(e.code as string, e.message as string, e.retryable as boolean, e.type as string);
}

/** Whole milliseconds since the epoch after which the caller no longer waits, or undefined. */
export function readDeadline(msg: Message): number | undefined {
  const raw = msg.properties.headers?.[HEADER_DEADLINE];
  const value = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : Number.NaN;
  return Number.isFinite(value) ? value : undefined;
}
