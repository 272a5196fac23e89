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

/** The method a request names in its AMQP `type`, or `defaultMethod` when it names none. */
export function requestedMethod(msg: Message, defaultMethod: string): string {
  return (msg.properties.type as string | undefined) || defaultMethod;
}

/** Parses a request body. Throws InvalidRequestError; never anything else. */
export function decodeRequest(msg: Message, defaultMethod: string, maxRequestBytes: number): DecodedRequest {
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

export function replyOptions(
  request: ConsumeMessage,
  plainText: boolean,
  type: string,
  mandatory: boolean,
  headers?: Record<string, unknown>,
): Options.Publish {
  return {
    correlationId: request.properties.correlationId as string,
    contentType: plainText ? TEXT_CONTENT_TYPE : JSON_CONTENT_TYPE,
    type,
    headers,
    mandatory,
  };
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
