import { randomBytes } from 'node:crypto';
import { type Attributes, isSpanContextValid, context as otelContext, type Span, trace } from '@opentelemetry/api';
import type { Channel, ChannelModel, ConsumeMessage, Message } from 'amqplib';
import type { Logger } from 'pino';
import { BrokerConnection, type BrokerOptions } from '../connection/broker-connection.ts';
import { AbortedError, ConnectionLostError, NoResponderError, type RpcError, TimeoutError } from '../errors.ts';
import {
  DIRECT_REPLY_TO,
  decodeReply,
  encodeRequest,
  HEADER_DEADLINE,
  HEADER_VERSION,
  JSON_CONTENT_TYPE,
  PROTOCOL_VERSION,
} from '../protocol.ts';
import { callAttributes, recordFailure, SpanKind, tracer } from '../spans.ts';
import { DeadlineHeap } from './deadline-heap.ts';

export interface RpcClientOptions extends Omit<BrokerOptions, 'connectionName' | 'log'> {
  queue: string;
  timeoutMs: number;
  retries: number;
  maxInFlight: number;
  log: Logger;
  connectionName?: string;
  /** Retry backoff: first delay and cap, full jitter. */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

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

export interface CallResult {
  result: unknown;
  correlationId: string;
  attempts: number;
}

/** Hooks that tracing (or anything else) can attach without the core knowing about it. */
export interface ClientStats {
  /** Replies for calls that had already been answered. */
  duplicatesDropped: number;
  /** Replies for calls that had already failed (timed out, aborted, connection lost). */
  lateReplies: number;
  /** Replies whose correlation id this client never issued. */
  unknownReplies: number;
  /** Requests returned by the broker as unroutable. */
  returned: number;
}

/** A request published and waiting for its reply; it holds one of the maxInFlight slots. */
interface Pending {
  id: string;
  resolve(value: unknown): void;
  reject(err: unknown): void;
  timeoutMs: number;
  /** performance.now() when the call times out, and its place in the deadline heap. */
  expiresAt: number;
  heapIndex: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

const NO_OPTIONS: CallOptions = Object.freeze({});

/** How many failed correlation ids are remembered to tell a late reply from a foreign one. */
const LATE_MEMORY = 10_000;

/**
 * Calls methods on RpcServers through a work queue, with replies on RabbitMQ's direct
 * reply-to pseudo-queue: no reply queue to declare or leak, one round trip.
 */
export class RpcClient {
  readonly stats: ClientStats = { duplicatesDropped: 0, lateReplies: 0, unknownReplies: 0, returned: 0 };
  readonly #options: RpcClientOptions;
  readonly #connection: BrokerConnection;
  readonly #pending = new Map<string, Pending>();
  readonly #failed = new Set<string>();
  /** One timer for every call's timeout. */
  readonly #deadlines = new DeadlineHeap<Pending>((pending) => {
    if (this.#pending.get(pending.id) === pending) {
      this.#settleFailed(pending.id, pending, new TimeoutError(pending.timeoutMs));
    }
  });
  /** Correlation ids are this random prefix plus a counter: unique and cheap. */
  readonly #idPrefix = randomBytes(6).toString('base64url');
  #nextId = 0;
  #channel: Channel | undefined;
  #ready: Promise<void> = Promise.resolve();
  #markReady: () => void = () => {};
  #isReady = false;
  /** Set while the socket buffer is full; publishing resumes on the channel's 'drain'. */
  #writable: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  #slotsInUse = 0;
  readonly #slotWaiters: Array<() => void> = [];
  #closed = false;

  private constructor(options: RpcClientOptions) {
    this.#options = options;
    this.#connection = new BrokerConnection(
      { ...options, connectionName: options.connectionName ?? 'fib-rpc-client' },
      (model) => this.#setup(model),
      () => this.#lost(),
    );
  }

  /** Connects and is ready to call; throws ConnectionFailedError if the broker is unreachable. */
  static async connect(options: RpcClientOptions): Promise<RpcClient> {
    const client = new RpcClient(options);
    await client.#connection.start();
    return client;
  }

  get pendingCalls(): number {
    return this.#pending.size;
  }

  get connected(): boolean {
    return this.#channel !== undefined;
  }

  async #setup(model: ChannelModel): Promise<void> {
    const channel = await model.createChannel();
    channel.on('error', () => {}); // reported through 'close' below
    channel.on('return', (msg: Message) => this.#returned(msg));
    channel.on('drain', () => {
      this.#writable = undefined;
      this.#drained?.();
    });
    channel.once('close', () => {
      if (this.#channel !== channel) return;
      this.#channel = undefined;
      this.#lost();
      if (!this.#closed) void this.#connection.recycle();
    });
    // Direct reply-to requires consuming before publishing, on the same channel, without acks.
    await channel.consume(DIRECT_REPLY_TO, (msg) => this.#reply(msg), { noAck: true });
    this.#channel = channel;
    this.#isReady = true;
    this.#markReady();
  }

  /** Fails every call in flight at once: their replies can no longer reach this channel. */
  #lost(): void {
    this.#channel = undefined;
    if (this.#isReady && !this.#closed) {
      this.#isReady = false;
      this.#ready = new Promise<void>((resolve) => {
        this.#markReady = resolve;
      });
    }
    for (const [id, pending] of this.#pending) this.#settleFailed(id, pending, new ConnectionLostError());
  }

  #reply(msg: ConsumeMessage | null): void {
    if (msg === null) return; // the broker cancelled the reply consumer; the channel closes next
    const id = msg.properties.correlationId as string | undefined;
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (id === undefined || pending === undefined) {
      this.#countStray(id);
      return;
    }
    this.#finish(pending);
    try {
      pending.resolve(decodeReply(msg));
    } catch (err) {
      pending.reject(err);
    }
  }

  /** Forgets a settled call: its correlation entry, timeout, abort listener and slot. */
  #finish(pending: Pending): void {
    this.#pending.delete(pending.id);
    this.#deadlines.delete(pending);
    if (pending.onAbort !== undefined) pending.signal?.removeEventListener('abort', pending.onAbort);
    this.#releaseSlot();
  }

  #countStray(id: string | undefined): void {
    if (id !== undefined && this.#failed.has(id)) {
      this.#failed.delete(id);
      this.stats.lateReplies++;
    } else if (id?.startsWith(this.#idPrefix)) {
      this.stats.duplicatesDropped++;
    } else {
      this.stats.unknownReplies++;
    }
  }

  #returned(msg: Message): void {
    this.stats.returned++;
    const id = msg.properties.correlationId as string | undefined;
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (id !== undefined && pending !== undefined) {
      this.#settleFailed(id, pending, new NoResponderError(this.#options.queue));
    }
  }

  #settleFailed(id: string, pending: Pending, err: RpcError): void {
    this.#finish(pending);
    if (this.#failed.size >= LATE_MEMORY) {
      const oldest = this.#failed.values().next().value;
      if (oldest !== undefined) this.#failed.delete(oldest);
    }
    this.#failed.add(id);
    pending.reject(err);
  }

  /**
   * Calls `method` with `params` and resolves with the server's result. Rejects with a
   * RpcError: TimeoutError, NoResponderError, ConnectionLostError, AbortedError, or the
   * server's RemoteError. Retryable errors are retried with capped, jittered backoff.
   */
  call(method: string, params: unknown, options: CallOptions = NO_OPTIONS): Promise<CallResult> {
    const id = this.#idPrefix + (this.#nextId++).toString(36);
    const attributes = callAttributes(method, this.#options.queue, options.attributes);
    attributes['messaging.message.conversation_id'] = id;
    // What tracer.startActiveSpan does, without its async wrapper; and without making a
    // context for a span that carries no trace (tracing off): there is nothing to propagate.
    const parent = otelContext.active();
    const span = tracer.startSpan(`call ${method}`, { kind: SpanKind.CLIENT, attributes }, parent);
    const result = isSpanContextValid(span.spanContext())
      ? otelContext.with(trace.setSpan(parent, span), this.#callWithRetries, this, id, method, params, options, span)
      : this.#callWithRetries(id, method, params, options, span);
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

  #callWithRetries(id: string, method: string, params: unknown, options: CallOptions, span: Span): Promise<CallResult> {
    let body: Buffer;
    try {
      body = encodeRequest(params);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#attempt(id, method, body, options).then(
      (result) => ({ result, correlationId: id, attempts: 1 }),
      (err: unknown) => this.#retry(err as RpcError, id, method, body, options, span),
    );
  }

  /** After a failed first attempt: retries what may be retried, with capped, jittered backoff. */
  async #retry(
    first: RpcError,
    id: string,
    method: string,
    body: Buffer,
    options: CallOptions,
    span: Span,
  ): Promise<CallResult> {
    const retries = options.retries ?? this.#options.retries;
    let error = first;
    for (let attempt = 0; ; attempt++) {
      const retryable = error.retryable && (error.code !== 'TIMEOUT' || options.retryOnTimeout === true);
      if (!retryable || attempt >= retries || this.#closed || options.signal?.aborted) throw error;
      const base = this.#options.retryBaseMs ?? 100;
      const cap = this.#options.retryMaxMs ?? 2000;
      span.addEvent('retry', { 'rpc.attempt': attempt + 2, 'rpc.error.code': error.code });
      await abortableSleep(Math.random() * Math.min(cap, base * 2 ** attempt), options.signal);
      try {
        const result = await this.#attempt(id, method, body, options);
        return { result, correlationId: id, attempts: attempt + 2 };
      } catch (err) {
        error = err as RpcError;
      }
    }
  }

  /** One request and its reply. The fast path (a free slot, connected, writable) does not wait. */
  #attempt(id: string, method: string, body: Buffer, options: CallOptions): Promise<unknown> {
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    if (this.#slotsInUse < this.#options.maxInFlight && this.#channel !== undefined && this.#writable === undefined) {
      this.#slotsInUse++;
      return this.#publishAndWait(id, method, body, deadline, timeoutMs, timeoutMs, signal);
    }
    return this.#attemptAfterWaiting(id, method, body, deadline, timeoutMs, signal);
  }

  async #attemptAfterWaiting(
    id: string,
    method: string,
    body: Buffer,
    deadline: number,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    await this.#acquireSlot(deadline, signal);
    try {
      if (this.#channel === undefined) await this.#waitFor(this.#ready, deadline, signal, timeoutMs);
      if (this.#writable !== undefined) await this.#waitFor(this.#writable, deadline, signal, timeoutMs);
    } catch (err) {
      this.#releaseSlot();
      throw err;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      this.#releaseSlot();
      throw new TimeoutError(timeoutMs);
    }
    return this.#publishAndWait(id, method, body, deadline, remaining, timeoutMs, signal);
  }

  /** Publishes the request; the slot the caller took is released when the call settles. */
  #publishAndWait(
    id: string,
    method: string,
    body: Buffer,
    deadline: number,
    remaining: number,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    const channel = this.#channel;
    if (channel === undefined) {
      this.#releaseSlot();
      return Promise.reject(new ConnectionLostError('not connected to the broker'));
    }
    return new Promise<unknown>((resolve, reject) => {
      const pending: Pending = {
        id,
        resolve,
        reject,
        timeoutMs,
        expiresAt: performance.now() + remaining,
        heapIndex: -1,
        signal,
        onAbort: undefined,
      };
      if (signal !== undefined) {
        pending.onAbort = () => {
          if (this.#pending.get(id) === pending) this.#settleFailed(id, pending, new AbortedError(signal.reason));
        };
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.#pending.set(id, pending);
      this.#deadlines.add(pending);
      let flowing: boolean;
      try {
        flowing = channel.publish('', this.#options.queue, body, {
          correlationId: id,
          replyTo: DIRECT_REPLY_TO,
          messageId: id,
          type: method,
          contentType: JSON_CONTENT_TYPE,
          // The broker drops the request once nobody waits for it, so no server computes it.
          expiration: String(remaining),
          mandatory: true,
          headers: { [HEADER_VERSION]: PROTOCOL_VERSION, [HEADER_DEADLINE]: deadline },
        });
      } catch (err) {
        // E.g. the channel closed under us: amqplib's error, as before.
        if (this.#pending.get(id) === pending) this.#finish(pending);
        reject(err);
        return;
      }
      if (!flowing && this.#writable === undefined) {
        this.#writable = new Promise<void>((ok) => {
          this.#drained = ok;
        });
      }
    });
  }

  async #acquireSlot(deadline: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.#slotsInUse < this.#options.maxInFlight) {
      this.#slotsInUse++;
      return;
    }
    let granted!: () => void;
    const slot = new Promise<void>((resolve) => {
      granted = resolve;
    });
    this.#slotWaiters.push(granted);
    try {
      await this.#waitFor(slot, deadline, signal, deadline - Date.now());
    } catch (err) {
      const index = this.#slotWaiters.indexOf(granted);
      if (index >= 0) this.#slotWaiters.splice(index, 1);
      else this.#releaseSlot(); // granted in the same tick as the timeout: hand it on
      throw err;
    }
  }

  #releaseSlot(): void {
    const next = this.#slotWaiters.shift();
    if (next) next();
    else this.#slotsInUse--;
  }

  /** Waits for `ready` but no longer than the deadline, and not past an abort. */
  #waitFor(ready: Promise<void>, deadline: number, signal: AbortSignal | undefined, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(new AbortedError(signal?.reason));
      };
      const timer = setTimeout(
        () => {
          signal?.removeEventListener('abort', onAbort);
          reject(new TimeoutError(timeoutMs));
        },
        Math.max(0, deadline - Date.now()),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      ready.then(() => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, pending] of this.#pending)
      this.#settleFailed(id, pending, new AbortedError(new Error('client closed')));
    this.#deadlines.clear();
    const channel = this.#channel;
    this.#channel = undefined;
    await channel?.close().catch(() => {});
    await this.#connection.close();
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
