/**
 * Errors are values with a stable `code`, a human message and `retryable`: whether the
 * same idempotent call may succeed if sent again. They cross the wire as the same
 * envelope (see protocol.ts), so a caller sees a server's error with its own code.
 */
/** The codes of the errors this library raises itself; a server's errors keep theirs (RemoteError). */
export type ErrorCode =
  | 'INVALID_REQUEST'
  | 'UNKNOWN_METHOD'
  | 'HANDLER_ERROR'
  | 'UNSUPPORTED_VERSION'
  | 'PROTOCOL_ERROR'
  | 'TIMEOUT'
  | 'NO_RESPONDER'
  | 'CONNECTION_FAILED'
  | 'CONNECTION_LOST'
  | 'BROKER_BLOCKED'
  | 'QUEUE_MISMATCH'
  | 'ABORTED';

/**
 * The base of every error of the library. `Code` is ErrorCode for errors raised here;
 * RemoteError carries whatever code the server sent.
 */
export class RpcError<Code extends string = ErrorCode> extends Error {
  override name = 'RpcError';
  readonly code: Code;
  readonly retryable: boolean;
  constructor(code: Code, message: string, retryable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.retryable = retryable;
  }
}

/** Whether sending the same (idempotent) call again may succeed: only RpcErrors that say so. */
export function isRetryable(err: unknown): boolean {
  return err instanceof RpcError && err.retryable;
}

/** No reply within the call's timeout: the server may or may not have done the work. */
export class TimeoutError extends RpcError {
  override name = 'TimeoutError';
  /** `why`, when known, says what kept the reply away (e.g. a broker resource alarm). */
  constructor(timeoutMs: number, why?: string) {
    super('TIMEOUT', `no reply within ${timeoutMs} ms${why === undefined ? '' : `: ${why}`}`, true);
  }
}

/** The broker could not route the request: no queue (so no server) exists for it. */
export class NoResponderError extends RpcError {
  override name = 'NoResponderError';
  constructor(queue: string) {
    super('NO_RESPONDER', `no server is listening: queue "${queue}" does not exist`, true);
  }
}

/** The request was refused before any work: retrying the same request cannot help. */
export class InvalidRequestError extends RpcError {
  override name = 'InvalidRequestError';
  constructor(message: string) {
    super('INVALID_REQUEST', message, false);
  }
}

/**
 * The request speaks a newer major version of the wire format than this server: it cannot
 * know what the request means. Not retryable against this server; a newer one must answer.
 */
export class UnsupportedVersionError extends RpcError {
  override name = 'UnsupportedVersionError';
  constructor(requested: number, supported: number) {
    super(
      'UNSUPPORTED_VERSION',
      `the request speaks protocol version ${requested}; this server speaks version ${supported} and older`,
      false,
    );
  }
}

/**
 * A reply the client cannot read (not JSON, another content type, fields missing): raised
 * locally, not sent by the server, so it is no RemoteError. Not retryable: a responder that
 * answers so is broken or speaks another protocol, and would answer the same again.
 */
export class ProtocolError extends RpcError {
  override name = 'ProtocolError';
  constructor(message: string) {
    super('PROTOCOL_ERROR', message, false);
  }
}

/** The broker cannot be reached at all. */
export class ConnectionFailedError extends RpcError {
  override name = 'ConnectionFailedError';
  constructor(message: string, options?: ErrorOptions) {
    super('CONNECTION_FAILED', message, true, options);
  }
}

/** The connection dropped while the call was in flight; the server may have done the work. */
export class ConnectionLostError extends RpcError {
  override name = 'ConnectionLostError';
  constructor(message = 'connection to the broker was lost while the call was in flight') {
    super('CONNECTION_LOST', message, true);
  }
}

/**
 * The broker has blocked the connection (AMQP connection.blocked): a resource alarm, memory
 * or disk, stops it reading from every publishing connection until the alarm clears. A call
 * made meanwhile fails at once without sending its request, which the broker would not read:
 * nothing was done, so a retry (with backoff) is always safe. `reason` is the broker's.
 */
export class BrokerBlockedError extends RpcError {
  override name = 'BrokerBlockedError';
  constructor(reason: string | undefined) {
    super('BROKER_BLOCKED', blockedMessage(reason), true);
  }
}

/** What a blocked broker means for the caller, and where an operator looks. */
export function blockedMessage(reason: string | undefined): string {
  const said = reason === undefined || reason === '' ? '' : ` ("${reason.slice(0, 200)}")`;
  return (
    `the broker blocked publishing${said}: it raised a resource alarm (memory or disk) and reads nothing ` +
    'from this connection until it clears; see rabbitmq-diagnostics alarms on the broker'
  );
}

/**
 * The broker refused to declare a queue because one of that name exists with other
 * arguments (AMQP 406 PRECONDITION_FAILED): nothing but a change of settings or of the
 * queue helps, so it is not retryable. `argument` and the two values are parsed from the
 * broker's message when it has the usual shape ("inequivalent arg ..."); a value of
 * undefined means "not set".
 */
export class QueueMismatchError extends RpcError {
  override name = 'QueueMismatchError';
  readonly queue: string;
  readonly argument: string | undefined;
  readonly declared: string | undefined;
  readonly current: string | undefined;
  constructor(queue: string, brokerMessage: string, options?: ErrorOptions) {
    const found = /inequivalent arg '([^']+)' for queue '.*' in vhost '.*': received (.+) but current is (.+?)"?$/.exec(
      brokerMessage,
    );
    const argument = found?.[1];
    const declared = found ? brokerValue(found[2] ?? '') : undefined;
    const current = found ? brokerValue(found[3] ?? '') : undefined;
    const show = (value: string | undefined) => (value === undefined ? 'not set' : `"${value}"`);
    super(
      'QUEUE_MISMATCH',
      argument === undefined
        ? `queue "${queue}" already exists with other arguments: ${brokerMessage}`
        : `queue "${queue}" already exists with other arguments: ${argument} is ${show(current)} on the broker, ${show(declared)} here`,
      false,
      options,
    );
    this.queue = queue;
    this.argument = argument;
    this.declared = declared;
    this.current = current;
  }
}

/** "'true'", "the value '5' of type 'byte'" or "none", as RabbitMQ writes them, to the bare value. */
function brokerValue(text: string): string | undefined {
  if (text === 'none') return undefined;
  return (/^the value '(.*)' of type '[^']*'$/.exec(text) ?? /^'(.*)'$/.exec(text))?.[1] ?? text;
}

/** The call was abandoned through its AbortSignal, or the client was closed. */
export class AbortedError extends RpcError {
  override name = 'AbortedError';
  constructor(reason?: unknown) {
    super('ABORTED', `call aborted${reason instanceof Error ? `: ${reason.message}` : ''}`, false);
  }
}

/** An error the server replied with; code and retryable are the server's. */
export class RemoteError extends RpcError<string> {
  override name = 'RemoteError';
  readonly remoteType: string;
  constructor(code: string, message: string, retryable: boolean, remoteType: string) {
    super(code, message, retryable);
    this.remoteType = remoteType;
  }
}

/** The request names a method the server does not implement. */
export class UnknownMethodError extends RpcError {
  override name = 'UnknownMethodError';
  constructor(method: string) {
    super('UNKNOWN_METHOD', `unknown method "${method.slice(0, 100)}"`, false);
  }
}

/**
 * A handler threw something other than an RpcError: the caller sees its message and, as
 * the type, the thrown error's name. Not retryable: nothing says the same input would fare
 * better; a handler that knows better throws an RpcError of its own.
 */
export class HandlerError extends RpcError {
  override name = 'HandlerError';
  constructor(thrown: unknown) {
    super('HANDLER_ERROR', thrown instanceof Error ? thrown.message : String(thrown), false, { cause: thrown });
    if (thrown instanceof Error) this.name = thrown.name;
  }
}

/** A handler's throw as the caller will see it: RpcErrors as they are, anything else a HandlerError. */
export function asRpcError(err: unknown): RpcError<string> {
  return err instanceof RpcError ? err : new HandlerError(err);
}
