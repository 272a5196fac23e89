/**
 * The defaults of every option, defined here once: RpcClient and RpcServer fill in what their
 * options leave out from these, and the programs' configuration (src/cmd/common/config.ts)
 * takes its defaults from them too. Documented in the package's README ("Options").
 */

/** The broker connection, client and server alike. */
export const BROKER_DEFAULTS = Object.freeze({
  /** AMQP heartbeat in seconds: a silent connection is found dead within two. 0 disables. */
  heartbeatS: 10,
  /** How long one attempt to open the connection may take. */
  connectTimeoutMs: 5000,
  /** Reconnect backoff (capped exponential, full jitter): the first delay and the cap. */
  initialDelayMs: 100,
  maxDelayMs: 2000,
});

/** Both sides: names the tracer, the spans' rpc.system and the connections; the work queue. */
const SHARED_DEFAULTS = Object.freeze({
  serviceName: 'fib-rpc',
  queue: 'rpc_queue',
});

export const CLIENT_DEFAULTS = Object.freeze({
  ...BROKER_DEFAULTS,
  ...SHARED_DEFAULTS,
  /** How long a call waits for its reply; also the request's message TTL. */
  timeoutMs: 30_000,
  /** Retries of a call that failed with a retryable error. */
  retries: 0,
  /** Calls awaiting a reply at once; further calls wait for a slot (within their deadline). */
  maxInFlight: 1024,
  /** Retry backoff (capped exponential, full jitter): the first delay and the cap. */
  retryBaseMs: 100,
  retryMaxMs: 2000,
});

export const SERVER_DEFAULTS = Object.freeze({
  ...BROKER_DEFAULTS,
  ...SHARED_DEFAULTS,
  /** classic (one broker node) or quorum (a cluster of three or more: replicated). */
  queueType: 'classic' as 'classic' | 'quorum',
  /** Deliveries of one request before it is dead-lettered (a poison message). */
  deliveryLimit: 5,
  /** Most messages the dead-letter queue keeps (oldest dropped first); 0: no limit. */
  dlqMaxLength: 100_000,
  /** How long the dead-letter queue keeps a message, in ms (7 days); 0: for ever. */
  dlqTtlMs: 604_800_000,
  /** Requests worked on at once (unacknowledged deliveries). */
  prefetch: 16,
  /** Larger request bodies are refused before they are parsed. */
  maxRequestBytes: 65_536,
  /** How long stop() waits for requests in flight. */
  drainTimeoutMs: 20_000,
  /** The first connection keeps trying for this long (ms); 0: for ever. */
  startupTimeoutMs: 0,
  /** The method of a request that names none (plain AMQP clients); '' answers it UNKNOWN_METHOD. */
  defaultMethod: '',
});

/**
 * `defaults` with what `options` sets over them: a key given as undefined keeps its default,
 * so that `{ timeoutMs: flags.timeout }` means "the default" when the flag is absent.
 */
export function withDefaults<D extends object, O extends object>(defaults: D, options: O): D & O {
  const merged: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) merged[key] = value;
  return merged as D & O;
}
