import type { Context } from '@opentelemetry/api';

/** One request of a call on the wire: a call makes one, and one more per retry. */
export interface Attempt {
  /** The call's correlation id, kept across retries: a late reply to an earlier attempt still matches. */
  readonly id: string;
  readonly method: string;
  readonly body: Buffer;
  /** The call's timeout, for its TimeoutError. */
  readonly timeoutMs: number;
  /** Epoch ms after which nobody waits for this attempt's reply (sent as x-deadline). */
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  /** The call's span as a context, injected into the request's headers; undefined when tracing is off. */
  readonly traceContext: Context | undefined;
}

export function startAttempt(
  id: string,
  method: string,
  body: Buffer,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  traceContext: Context | undefined,
): Attempt {
  return { id, method, body, timeoutMs, deadline: Date.now() + timeoutMs, signal, traceContext };
}
