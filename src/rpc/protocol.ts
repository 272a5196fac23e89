import type { ConsumeMessage, Message, Options } from 'amqplib';
import { InvalidRequestError, RemoteError, type RpcError } from './errors.ts';

/**
 * The wire format, documented in README.md ("Wire format") so that a client in any
 * language can talk to the server.
 *
 * Request:  published to the default exchange with routing key = the work queue.
 *   properties: correlation_id, reply_to, content_type application/json, type = method,
 *               message_id = request id (kept across retries), expiration = timeout in ms
 *   headers:    x-rpc-version: 1, x-deadline: epoch ms after which nobody waits, traceparent
 *   body:       JSON params, e.g. {"n":30}; a bare integer body such as 30 is accepted too
 * Reply:    published to the default exchange with routing key = reply_to.
 *   properties: correlation_id, content_type, type = "result" | "error"
 *   body:       {"result": <value>} or {"error": {"code","message","retryable","type"}}
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

/** Parses a request body. Throws InvalidRequestError; never anything else. */
export function decodeRequest(msg: Message, defaultMethod: string, maxRequestBytes: number): DecodedRequest {
  const plainText = msg.properties.contentType !== JSON_CONTENT_TYPE;
  const problem = checkRequestEnvelope(msg, maxRequestBytes);
  if (problem) throw new InvalidRequestError(problem);
  const method = (msg.properties.type as string | undefined) || defaultMethod;
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

export function encodeResult(result: unknown, plainText: boolean): Buffer {
  if (plainText) return Buffer.from(typeof result === 'string' ? result : JSON.stringify(result));
  return Buffer.from(`{"result":${JSON.stringify(result)}}`);
}

export function toEnvelope(err: RpcError): ErrorEnvelope {
  return { code: err.code, message: err.message, retryable: err.retryable, type: err.name };
}

export function encodeError(envelope: ErrorEnvelope, plainText: boolean): Buffer {
  if (plainText) return Buffer.from(`error: ${envelope.code}: ${envelope.message}`);
  return Buffer.from(JSON.stringify({ error: envelope }));
}

export function replyOptions(
  request: ConsumeMessage,
  plainText: boolean,
  type: string,
  headers?: Record<string, unknown>,
): Options.Publish {
  return {
    correlationId: request.properties.correlationId as string,
    contentType: plainText ? TEXT_CONTENT_TYPE : JSON_CONTENT_TYPE,
    type,
    headers,
    // A reply to a queue that does not exist comes back as a basic.return, so the server
    // counts it instead of losing it silently. Not over direct reply-to: RabbitMQ (3.10 at
    // least) returns every mandatory reply published there, delivered or not, so a return
    // would say nothing and double the reply traffic. Replies to a caller that has gone are
    // dropped by the broker without a word.
    mandatory: !String(request.properties.replyTo).startsWith(DIRECT_REPLY_PREFIX),
  };
}

const DIRECT_REPLY_PREFIX = `${DIRECT_REPLY_TO}.`;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/**
 * Pids already found well formed. A server hears from the same few callers' channels over
 * and over, so the decode below runs once per caller, not once per request. Bounded.
 */
const wellFormedPids = new Set<string>();
const WELL_FORMED_PIDS_MAX = 1024;

/**
 * Why no reply may be published to `replyTo`, or null when it may. Plain queue names are
 * fine (at worst the reply is unroutable). A direct reply-to address is
 * `amq.rabbitmq.reply-to.<pid>.<key>`, <pid> being a base64 Erlang pid that the broker
 * decodes to find the caller's channel; RabbitMQ 3.10 (and others) answers a <pid> that
 * does not decode by closing the publisher's whole connection (541 INTERNAL_ERROR), so
 * such an address from a hostile or broken client would take the server's connection,
 * and every request in flight on it, down with it. Those requests are dead-lettered.
 */
export function replyToProblem(replyTo: unknown): string | null {
  if (typeof replyTo !== 'string' || replyTo === '') return 'the request has no reply_to';
  if (Buffer.byteLength(replyTo) > 255) return 'reply_to is longer than 255 bytes';
  if (!replyTo.startsWith(DIRECT_REPLY_PREFIX)) return null;
  const rest = replyTo.slice(DIRECT_REPLY_PREFIX.length);
  const dot = rest.indexOf('.');
  const pid = dot > 0 && dot < rest.length - 1 ? rest.slice(0, dot) : '';
  if (wellFormedPids.has(pid)) return null;
  if (!BASE64.test(pid) || !isErlangPid(Buffer.from(pid, 'base64'))) {
    return 'reply_to is not a well-formed direct reply-to address';
  }
  if (wellFormedPids.size >= WELL_FORMED_PIDS_MAX) wellFormedPids.clear();
  wellFormedPids.add(pid);
  return null;
}

/**
 * Erlang external term format of a pid: 131, NEW_PID_EXT (88) or PID_EXT (103), the node
 * name as an atom, then ID and Serial (4 bytes each) and Creation (4 bytes, 1 for PID_EXT).
 */
function isErlangPid(term: Buffer): boolean {
  if (term.length < 4 || term[0] !== 131) return false;
  const tail = term[1] === 88 ? 12 : term[1] === 103 ? 9 : -1;
  if (tail < 0) return false;
  let length: number;
  let offset: number;
  if (term[2] === 100 || term[2] === 118) {
    // ATOM_EXT, ATOM_UTF8_EXT: two-byte length
    length = term.length >= 5 ? term.readUInt16BE(3) : 0;
    offset = 5;
  } else if (term[2] === 115 || term[2] === 119) {
    // SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT: one-byte length
    length = term[3] ?? 0;
    offset = 4;
  } else {
    return false;
  }
  return length > 0 && term.length === offset + length + tail;
}

/** A reply as the client sees it: the value, or the remote error to throw. */
export function decodeReply(msg: Message): unknown {
  let body: unknown;
  try {
    body = JSON.parse(msg.content.toString('utf8'));
  } catch {
    throw new RemoteError('BAD_REPLY', 'reply body is not valid JSON', false, 'ProtocolError');
  }
  if (body !== null && typeof body === 'object') {
    if ('result' in body) return body.result;
    if ('error' in body) {
      const e = body.error as Partial<ErrorEnvelope> | null;
      throw new RemoteError(
        typeof e?.code === 'string' ? e.code : 'REMOTE_ERROR',
        typeof e?.message === 'string' ? e.message : 'remote error',
        e?.retryable === true,
        typeof e?.type === 'string' ? e.type : 'Error',
      );
    }
  }
  throw new RemoteError('BAD_REPLY', 'reply has neither "result" nor "error"', false, 'ProtocolError');
}

/** Whole milliseconds since the epoch after which the caller no longer waits, or undefined. */
export function readDeadline(msg: Message): number | undefined {
  const raw = msg.properties.headers?.[HEADER_DEADLINE];
  const value = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : Number.NaN;
  return Number.isFinite(value) ? value : undefined;
}
