import { randomBytes } from 'node:crypto';
import {
  type Attributes,
  type Context,
  isSpanContextValid,
  context as otelContext,
  type Span,
  trace,
} from '@opentelemetry/api';
import type { Channel, ChannelModel, Message } from 'amqplib';
import { backoffDelay } from '../connection/backoff.ts';
import { BrokerConnection } from '../connection/broker-connection.ts';
import type { ConnectionOptions } from '../connection/open-connection.ts';
import { CLIENT_DEFAULTS, withDefaults } from '../defaults.ts';
import {
  AbortedError,
  BrokerBlockedError,
  blockedMessage,
  ConnectionLostError,
  NoResponderError,
  type RpcError,
} from '../errors.ts';
import { guardObserver } from '../hooks.ts';
import { type Logger, stderrLogger } from '../logger.ts';
import type { Method } from '../method.ts';
import { DIRECT_REPLY_TO, encodeRequest } from '../protocol.ts';
import { RpcSpans, recordFailure, SpanKind, untracedConsume } from '../spans.ts';
import { type Attempt, startAttempt } from './attempt.ts';
import { CorrelationTable } from './correlation-table.ts';
import { CLIENT_HOOKS, type ClientObserver } from './observer.ts';
import { Publisher } from './publisher.ts';

/**
 * Only `url` is needed; everything else has a default (CLIENT_DEFAULTS, in the README's
 * "Options"). A key given as undefined keeps its default.
 */
export interface RpcClientOptions extends ConnectionOptions {
  /** Names the tracer, the spans' rpc.system and the broker connection (`<serviceName>-client`). */
  serviceName?: string;
  /** The work queue the server consumes. */
  queue?: string;
  /** How long a call waits for its reply (a call's own timeoutMs wins); also the request's TTL. */
  timeoutMs?: number;
  /** Retries of a call that failed with a retryable error (a call's own retries win). */
  retries?: number;
  /** Calls awaiting a reply at once; further calls wait for a slot, within their deadline. */
  maxInFlight?: number;
  observer?: ClientObserver;
  /** Retry backoff: first delay and cap, full jitter. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Undefined (the default): connect() makes one attempt and fails at once; a number keeps trying that many ms, 0 for ever. */
  startupTimeoutMs?: number;
}

/** The options with every default filled in. */
type ClientSettings = Omit<RpcClientOptions, keyof typeof CLIENT_DEFAULTS | 'log'> &
  typeof CLIENT_DEFAULTS & { log: Logger };

export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Retries for retryable errors; defaults to the client's. */
  retries?: number;
  /** Also retry after a timeout (only for calls the caller knows are idempotent). */
  retryOnTimeout?: boolean;
  /** Extra attributes for the call's span, e.g. the request's key parameters. */
  attributes?: Attributes;
}

export interface CallResult<Result = unknown> {
  result: Result;
  correlationId: string;
  attempts: number;
}

/** What one call() is about; its attempts share the id. */
interface Call {
  id: string;
  method: string;
  body: Buffer;
  options: CallOptions;
  span: Span;
  /** The call's span as a context when it carries a trace: what its requests propagate. */
  traceContext: Context | undefined;
}

const NO_OPTIONS: CallOptions = Object.freeze({});

/**
 * Calls methods on RpcServers through a work queue, with replies on RabbitMQ's direct
 * reply-to pseudo-queue: no reply queue to declare or leak, one round trip. This class is
 * the policy (spans, retries); the CorrelationTable matches replies and keeps deadlines,
 * the Publisher bounds and paces what goes out.
 */
export class RpcClient implements AsyncDisposable {
  readonly #options: ClientSettings;
  /** The caller's hooks, guarded: one that throws is logged and counted, never fails a call. */
  readonly #observer: ClientObserver;
  readonly #hookFailures: () => number;
  readonly #spans: RpcSpans;
  readonly #connection: BrokerConnection;
  readonly #publisher: Publisher;
  readonly #calls: CorrelationTable;
  /** Correlation ids are this random prefix plus a counter: unique and cheap. */
  readonly #idPrefix = randomBytes(6).toString('base64url');
  #nextId = 0;
  #closed = false;
  #started: Promise<void> | undefined;

  /** A client that is not connected yet: connect() it before calling (or use RpcClient.connect()). */
  constructor(clientOptions: RpcClientOptions) {
    const options: ClientSettings = withDefaults({ ...CLIENT_DEFAULTS, log: stderrLogger }, clientOptions);
    this.#options = options;
    const observer = guardObserver(options.observer ?? {}, CLIENT_HOOKS, options.log);
    this.#observer = observer.hooks;
    this.#hookFailures = observer.failures;
    this.#spans = new RpcSpans(options.serviceName);
    this.#publisher = new Publisher(options.queue, options.maxInFlight);
    this.#calls = new CorrelationTable(
      (id) => id.startsWith(this.#idPrefix),
      () => this.#publisher.releaseSlot(),
      (kind) => this.#observer.strayReply?.(kind),
      // A call that times out while the broker blocks us says why no reply came.
      () => (this.#connection.blocked ? blockedMessage(this.#connection.blockedReason) : undefined),
    );
    this.#connection = new BrokerConnection(
      { ...options, connectionName: options.connectionName ?? `${options.serviceName}-client` },
      (model) => this.#setup(model),
      () => this.#lost(),
    );
    this.#connection.watchBlocked((blocked, reason) => this.#observer.blocked?.(blocked, this.address, reason));
  }

  /** A client connected and ready to call; throws ConnectionFailedError if no broker is reachable. */
  static connect(options: RpcClientOptions): Promise<RpcClient> {
    return new RpcClient(options).connect();
  }

  /**
   * Connects (once: a second connect() waits for the same attempt, or tries again after a
   * failed one) and resolves with the client; throws ConnectionFailedError if no broker is
   * reachable.
   */
  connect(): Promise<this> {
    this.#started ??= this.#connection.start().catch((err: unknown) => {
      this.#started = undefined; // a failed attempt may be tried again
      throw err;
    });
    return this.#started.then(() => this);
  }

  get pendingCalls(): number {
    return this.#calls.size;
  }

  get connected(): boolean {
    return this.#publisher.attached;
  }

  /** How often an observer hook has thrown (each logged at warn and ignored). */
  get hookFailures(): number {
    return this.#hookFailures();
  }

  /** The broker in use: scheme://host:port/vhost, no credentials. */
  get address(): string {
    return this.#connection.address;
  }

  async #setup(model: ChannelModel): Promise<void> {
    const channel = await model.createChannel();
    channel.on('error', () => {}); // reported through 'close' below
    channel.on('return', (msg: Message) => this.#returned(msg));
    channel.once('close', () => {
      if (this.#lost(channel) && !this.#closed) void this.#connection.recycle();
    });
    // Direct reply-to requires consuming before publishing, on the same channel, without acks.
    // Untraced: the call's span covers the reply's arrival (see spans.ts).
    await untracedConsume(
      channel,
      DIRECT_REPLY_TO,
      (msg) => {
        // null: the broker cancelled the reply consumer; the channel closes next.
        if (msg !== null) this.#calls.reply(msg);
      },
      { noAck: true },
    );
    this.#publisher.attach(channel);
    this.#observer.connected?.(true, this.address);
  }

  /**
   * Fails every call in flight at once: their replies can no longer reach this channel.
   * A lost connection closes its channel first, then reports itself: only the first of the
   * two (the one that still finds `which`, or any channel, attached) counts, so the loss is
   * reported once and calls queued since are not failed for a channel they never used.
   */
  #lost(which?: Channel): boolean {
    if (this.#publisher.detach(!this.#closed, which) === undefined) return false;
    this.#observer.connected?.(false, this.address);
    this.#calls.failAll(() => new ConnectionLostError());
    return true;
  }

  #returned(msg: Message): void {
    this.#observer.returned?.();
    const id = msg.properties.correlationId as string | undefined;
    if (id !== undefined) this.#calls.fail(id, new NoResponderError(this.#options.queue));
  }

  /**
   * Calls `method` with `params` and resolves with the server's result. Rejects with a
   * RpcError: TimeoutError, NoResponderError, ConnectionLostError, BrokerBlockedError,
   * AbortedError, or the server's RemoteError. Retryable errors are retried with capped, jittered backoff.
   */
  call<Params, Result>(
    method: Method<Params, Result>,
    params: Params,
    options?: CallOptions,
  ): Promise<CallResult<Result>>;
  /** A method by name, with params and result as the server takes and gives them. */
  call(method: string, params: unknown, options?: CallOptions): Promise<CallResult<unknown>>;
  call(method: string | Method<unknown, unknown>, params: unknown, options: CallOptions = NO_OPTIONS) {
    const name = typeof method === 'string' ? method : method.name;
    const id = this.#idPrefix + (this.#nextId++).toString(36);
    const attributes = this.#spans.attributes(name, this.#options.queue, options.attributes);
    // The call span is the request's send span too (see spans.ts): the messaging attributes
    // of the publish span it stands for.
    attributes['messaging.system'] = 'rabbitmq';
    attributes['messaging.operation.type'] = 'send';
    // On the default exchange (named "" in AMQP, so no destination name): the routing key is the queue.
    attributes['messaging.rabbitmq.destination.routing_key'] = this.#options.queue;
    attributes['messaging.message.conversation_id'] = id;
    // What tracer.startActiveSpan does, without its async wrapper; and without making a
    // context for a span that carries no trace (tracing off): there is nothing to propagate.
    const parent = otelContext.active();
    const span = this.#spans.tracer.startSpan(`call ${name}`, { kind: SpanKind.CLIENT, attributes }, parent);
    const traceContext = isSpanContextValid(span.spanContext()) ? trace.setSpan(parent, span) : undefined;
    let call: Call;
    try {
      call = { id, method: name, body: encodeRequest(params), options, span, traceContext };
    } catch (err) {
      return this.#ended(span, Promise.reject(err));
    }
    const result =
      traceContext !== undefined
        ? otelContext.with(traceContext, this.#callWithRetries, this, call)
        : this.#callWithRetries(call);
    return this.#ended(span, result);
  }

  #ended<T>(span: Span, result: Promise<T>): Promise<T> {
    return result.then(
      (value) => {
        span.end();
        return value;
      },
      (err: unknown) => {
        recordFailure(span, err as RpcError);
        span.end();
        throw err;
      },
    );
  }

  #callWithRetries(call: Call): Promise<CallResult> {
    return this.#send(this.#attempt(call)).then(
      (result) => ({ result, correlationId: call.id, attempts: 1 }),
      (err: unknown) => this.#retry(err as RpcError, call),
    );
  }

  #attempt(call: Call): Attempt {
    const timeoutMs = call.options.timeoutMs ?? this.#options.timeoutMs;
    return startAttempt(call.id, call.method, call.body, timeoutMs, call.options.signal, call.traceContext);
  }

  /** After a failed first attempt: retries what may be retried, with capped, jittered backoff. */
  async #retry(first: RpcError, call: Call): Promise<CallResult> {
    const { options } = call;
    const retries = options.retries ?? this.#options.retries;
    const policy = { initialMs: this.#options.retryBaseMs, maxMs: this.#options.retryMaxMs };
    let error = first;
    for (let retry = 0; ; retry++) {
      const retryable = error.retryable && (error.code !== 'TIMEOUT' || options.retryOnTimeout === true);
      if (!retryable || retry >= retries || this.#closed || options.signal?.aborted) throw error;
      call.span.addEvent('retry', { 'rpc.attempt': retry + 2, 'rpc.error.code': error.code });
      await abortableSleep(backoffDelay(retry, policy), options.signal);
      try {
        const result = await this.#send(this.#attempt(call));
        return { result, correlationId: call.id, attempts: retry + 2 };
      } catch (err) {
        error = err as RpcError;
      }
    }
  }

  /**
   * One request and its reply. The fast path (a free slot, connected, writable) does not wait.
   * While the broker blocks the connection nothing is published: the call fails with
   * BrokerBlockedError instead (see docs/reliability.md, "Resource alarms").
   */
  #send(attempt: Attempt): Promise<unknown> {
    const signal = attempt.signal;
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    if (this.#connection.blocked) return this.#blockedFailure();
    if (this.#publisher.takeSlotNow()) return this.#publishAndWait(attempt, attempt.timeoutMs);
    return this.#publisher.waitForSlot(attempt).then((remaining) => this.#publishAndWait(attempt, remaining));
  }

  /**
   * Fails a call for the block on the next turn of the event loop, not as a promise already
   * rejected: a caller that calls again at once in a loop would otherwise run on microtasks
   * alone, and never let the socket deliver the 'unblocked' that ends the block.
   */
  #blockedFailure(): Promise<never> {
    const error = new BrokerBlockedError(this.#connection.blockedReason);
    return new Promise((_, reject) => setImmediate(reject, error));
  }

  /** Publishes the request; the slot the caller took is freed when the call settles. */
  #publishAndWait(attempt: Attempt, remainingMs: number): Promise<unknown> {
    if (this.#connection.blocked) {
      // The broker blocked us while this call waited for a slot or a channel.
      this.#publisher.releaseSlot();
      return this.#blockedFailure();
    }
    return new Promise<unknown>((resolve, reject) => {
      this.#calls.track(attempt, remainingMs, resolve, reject);
      try {
        this.#publisher.publish(attempt, remainingMs);
      } catch (err) {
        // E.g. the channel closed under us: amqplib's error (or ours), as it is.
        this.#calls.untrack(attempt);
        reject(err);
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#calls.failAll(() => new AbortedError(new Error('client closed')));
    this.#calls.clear();
    const channel = this.#publisher.detach(false);
    if (channel !== undefined) await this.#connection.closeChannel(channel);
    await this.#connection.close();
  }

  /** `await using client = await RpcClient.connect(…)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError(signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
