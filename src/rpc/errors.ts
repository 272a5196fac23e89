/**
 * Errors are values with a stable `code`, a human message and `retryable`: whether the
 * same idempotent call may succeed if sent again. They cross the wire as the same
 * envelope (see protocol.ts), so a caller sees a server's error with its own code.
 */
export type ErrorCode =
  | 'INVALID_REQUEST'
  | 'UNKNOWN_METHOD'
  | 'HANDLER_ERROR'
  | 'TIMEOUT'
  | 'NO_RESPONDER'
  | 'CONNECTION_FAILED'
  | 'CONNECTION_LOST'
  | 'QUEUE_MISMATCH'
  | 'ABORTED'
  | 'OVERLOADED'
  | 'SHUTTING_DOWN';

export class RpcError extends Error {
  override name = 'RpcError';
  readonly code: string;
  readonly retryable: boolean;
  constructor(code: string, message: string, retryable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.retryable = retryable;
  }
}

/** No reply within the call's timeout: the server may or may not have done the work. */
export class TimeoutError extends RpcError {
  override name = 'TimeoutError';
  constructor(timeoutMs: number) {
    super('TIMEOUT', `no reply within ${timeoutMs} ms`, true);
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

export class AbortedError extends RpcError {
  override name = 'AbortedError';
  constructor(reason?: unknown) {
    super('ABORTED', `call aborted${reason instanceof Error ? `: ${reason.message}` : ''}`, false);
  }
}

/** An error the server replied with; code and retryable are the server's. */
export class RemoteError extends RpcError {
  override name = 'RemoteError';
  readonly remoteType: string;
  constructor(code: string, message: string, retryable: boolean, remoteType: string) {
    super(code, message, retryable);
    this.remoteType = remoteType;
  }
}
