import { setTimeout as delay } from 'node:timers/promises';
import type { Channel, ChannelModel } from 'amqplib';
import { BROKER_DEFAULTS } from '../defaults.ts';
import { ConnectionFailedError, RpcError } from '../errors.ts';
import { destroySocket } from './amqplib-patches.ts';
import { backoffDelay } from './backoff.ts';
import { CLOSE_TIMEOUT_MS, closeWithin, within } from './bounded-close.ts';
import { describeBroker, describeBrokers, parseBrokerUrls } from './broker-addresses.ts';
import { type BrokerOptions, openConnection, reason } from './open-connection.ts';

// The reconnect delay cap (BROKER_DEFAULTS.maxDelayMs, 2 s): a broker that comes back is found
// again within about this long (plus the connection set-up), which keeps recovery after a
// broker restart under 5 s.

/** Failed connection attempts are logged at warn at most this often (the others at debug). */
const FAILURE_WARN_INTERVAL_MS = 10_000;

/** Called after every (re)connection; throwing makes the attempt count as failed. */
export type SetupFn = (model: ChannelModel) => Promise<void>;

/** Hears when the broker blocks (true, with its reason) or unblocks (false) the connection in use. */
export type BlockedFn = (blocked: boolean, reason?: string) => void;

/**
 * One broker connection that comes back by itself: after an unexpected close it
 * reconnects with capped exponential backoff (full jitter) and runs `setup` again so the
 * owner can re-create channels, queues and consumers. With several addresses it fails over:
 * after a loss it tries the next address first, since the one it lost is likely down.
 */
export class BrokerConnection {
  readonly #options: BrokerOptions;
  readonly #setup: SetupFn;
  readonly #onLost: (err: Error) => void;
  readonly #open: typeof openConnection;
  readonly #addressCount: number;
  /** The address the next attempt starts with. */
  #nextIndex = 0;
  #url: string;
  #model: ChannelModel | undefined;
  #closing = false;
  #reconnecting = false;
  /** Ends start()'s wait between attempts early: close() aborts it. */
  #startupPause: AbortController | undefined;
  /** The broker's reason while it blocks the connection in use (connection.blocked), else undefined. */
  #blockedReason: string | undefined;
  #onBlocked: BlockedFn = () => {};

  /** `open` is amqplib's connect behind openConnection; tests pass their own. */
  constructor(
    options: BrokerOptions,
    setup: SetupFn,
    onLost: (err: Error) => void,
    open: typeof openConnection = openConnection,
  ) {
    this.#options = options;
    this.#setup = setup;
    this.#onLost = onLost;
    this.#open = open;
    const urls = parseBrokerUrls(options.url);
    this.#addressCount = urls.length;
    this.#url = urls[0] ?? options.url;
  }

  /** The broker in use (or last used, or to be tried first): scheme, host, port, vhost. */
  get address(): string {
    return describeBroker(this.#url);
  }

  /** The URL in use, credentials included: for auxiliary connections to the same node. */
  get url(): string {
    return this.#url;
  }

  get connected(): boolean {
    return this.#model !== undefined;
  }

  /**
   * Whether the broker blocks the connection in use: it raised a resource alarm and reads
   * nothing from it (not even a Close) until the alarm clears. RabbitMQ blocks only
   * connections that have published, so a fresh one learns of an alarm after its first publish.
   */
  get blocked(): boolean {
    return this.#blockedReason !== undefined;
  }

  /** The broker's reason for the block, while blocked. */
  get blockedReason(): string | undefined {
    return this.#blockedReason;
  }

  /** `listener` hears of every change of `blocked`, a lost connection counting as unblocked. */
  watchBlocked(listener: BlockedFn): void {
    this.#onBlocked = listener;
  }

  /**
   * First connection. Without `startupTimeoutMs`: one attempt (each address once),
   * failing with ConnectionFailedError naming the hosts. With it: attempts with the
   * reconnect backoff until one succeeds, close() is called (then it returns unconnected),
   * or the time is up (0: never), then fails with ConnectionFailedError. A set-up the
   * broker refuses for good (a non-retryable RpcError such as QueueMismatchError) fails at
   * once either way.
   */
  async start(): Promise<void> {
    const timeoutMs = this.#options.startupTimeoutMs;
    if (timeoutMs === undefined) {
      await this.#connectOnce();
      return;
    }
    const began = performance.now();
    const deadline = timeoutMs === 0 ? Number.POSITIVE_INFINITY : began + timeoutMs;
    const failed = this.#failureLog('cannot reach the broker yet, retrying', began);
    for (let attempt = 0; !this.#closing; attempt++) {
      try {
        await this.#connectOnce();
        if (attempt > 0) {
          this.#options.log.info(
            { broker: this.address, attempts: attempt + 1, waited_ms: Math.round(performance.now() - began) },
            'connected to the broker',
          );
        }
        return;
      } catch (err) {
        if (err instanceof RpcError && !err.retryable) throw err;
        failed(err, attempt + 1);
        const left = deadline - performance.now();
        if (left <= 0) {
          const waitedS = ((performance.now() - began) / 1000).toFixed(1);
          throw new ConnectionFailedError(
            `gave up on the broker after ${attempt + 1} attempts in ${waitedS} s; the last: ${attemptError(err)}`,
            { cause: err },
          );
        }
        await this.#pauseStartup(Math.min(left, this.#backoff(attempt)));
      }
    }
  }

  /**
   * The pause between start-up attempts. Unlike the reconnect's it keeps the process alive:
   * someone awaits start(), and a script with nothing else on its event loop would exit in the
   * middle of the wait (code 13, an unsettled top-level await). close() ends it at once.
   */
  async #pauseStartup(ms: number): Promise<void> {
    // close() may have come during the attempt that just failed.
    if (this.#closing) return;
    const pause = new AbortController();
    this.#startupPause = pause;
    try {
      await delay(ms, undefined, { signal: pause.signal });
    } catch {
      // close() ended the pause; the loop sees #closing.
    } finally {
      this.#startupPause = undefined;
    }
  }

  async #connectOnce(): Promise<void> {
    const { model, index, url } = await this.#open(this.#options, this.#nextIndex);
    this.#url = url;
    // Whatever happens next, the attempt after this one starts with the following address.
    this.#nextIndex = (index + 1) % this.#addressCount;
    let gone = false;
    model.on('error', (err: Error) => this.#options.log.debug({ err: reason(err) }, 'broker connection error'));
    model.on('blocked', (why: string) => {
      this.#options.log.warn(
        { broker: this.address, reason: why },
        'broker blocked publishing: a resource alarm (memory or disk); calls fail with BROKER_BLOCKED until it clears',
      );
      if (this.#model === model || this.#model === undefined) this.#setBlocked(why || 'resource alarm');
    });
    model.on('unblocked', () => {
      this.#options.log.info({ broker: this.address }, 'broker unblocked publishing');
      if (this.#model === model || this.#model === undefined) this.#setBlocked(undefined);
    });
    model.once('close', (err?: Error) => {
      gone = true;
      // Only the connection in use is recovered; one lost during set-up is its retry loop's.
      if (this.#model === model) this.#closed(err);
    });
    try {
      await this.#setup(model);
    } catch (err) {
      await this.#closeModel(model);
      if (err instanceof RpcError && !err.retryable) throw err;
      throw new ConnectionFailedError(`broker at ${this.address} refused set-up: ${reason(err)}`, { cause: err });
    }
    if (gone) throw new ConnectionFailedError(`the connection to ${this.address} closed during set-up`);
    if (this.#closing) {
      // close() came while this attempt was under way: nobody else would close this one.
      await this.#closeModel(model);
      return;
    }
    this.#model = model;
  }

  #setBlocked(reason: string | undefined): void {
    if (reason === this.#blockedReason) return;
    const was = this.blocked;
    this.#blockedReason = reason;
    if (was !== this.blocked) this.#onBlocked(this.blocked, reason);
  }

  #closed(err?: Error): void {
    this.#model = undefined;
    // A new connection starts unblocked; the broker blocks it again once it publishes.
    this.#setBlocked(undefined);
    if (this.#closing) return;
    const lost = err ?? new Error('connection closed by the broker');
    this.#options.log.warn({ broker: this.address, err: reason(lost) }, 'lost the broker connection, reconnecting');
    this.#onLost(lost);
    void this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    const failed = this.#failureLog('reconnect attempt failed', performance.now());
    try {
      for (let attempt = 0; !this.#closing; attempt++) {
        await sleep(this.#backoff(attempt));
        if (this.#closing) return;
        try {
          await this.#connectOnce();
          this.#options.log.info({ broker: this.address, attempt: attempt + 1 }, 'reconnected to the broker');
          return;
        } catch (err) {
          failed(err, attempt + 1);
        }
      }
    } finally {
      this.#reconnecting = false;
    }
  }

  #backoff(attempt: number): number {
    return backoffDelay(attempt, {
      initialMs: this.#options.initialDelayMs ?? BROKER_DEFAULTS.initialDelayMs,
      maxMs: this.#options.maxDelayMs ?? BROKER_DEFAULTS.maxDelayMs,
    });
  }

  /**
   * Failed attempts come every second or two for as long as the broker is away: each is
   * logged at debug, and one per FAILURE_WARN_INTERVAL_MS at warn, so a long outage still
   * says what is wrong without flooding the log.
   */
  #failureLog(message: string, began: number): (err: unknown, attempt: number) => void {
    let warned = Number.NEGATIVE_INFINITY;
    const brokers = describeBrokers(this.#options.url);
    return (err, attempt) => {
      const now = performance.now();
      const fields = { broker: brokers, attempt, waited_ms: Math.round(now - began), err: attemptError(err) };
      if (now - warned >= FAILURE_WARN_INTERVAL_MS) {
        warned = now;
        this.#options.log.warn(fields, message);
      } else {
        this.#options.log.debug(fields, message);
      }
    };
  }

  /** Closes the current connection for a fresh one (used when a channel dies under us). */
  async recycle(): Promise<void> {
    if (this.#model !== undefined) await this.#closeModel(this.#model);
  }

  /**
   * Closes a channel of the connection in use, waiting for the broker no longer than
   * CLOSE_TIMEOUT_MS, and not at all while it blocks the connection (it would not read the
   * Close): closing the connection takes the channel with it.
   */
  async closeChannel(channel: Channel): Promise<void> {
    if (this.blocked) return;
    await within(channel.close(), CLOSE_TIMEOUT_MS);
  }

  /** Closes for good; bounded like closeChannel(), so a silent or blocked broker cannot hold it. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#startupPause?.abort();
    const model = this.#model;
    this.#model = undefined;
    if (model !== undefined) await this.#closeModel(model);
    this.#setBlocked(undefined);
  }

  /**
   * The AMQP close, bounded (see closeWithin). A blocked broker never reads the Close, so
   * the socket of a blocked connection is destroyed at once.
   */
  async #closeModel(model: ChannelModel): Promise<void> {
    if (this.#blockedReason !== undefined && (this.#model === model || this.#model === undefined)) {
      destroySocket(model, 'closed while the broker blocked the connection');
      return;
    }
    if (!(await closeWithin(model))) {
      this.#options.log.warn(
        { broker: this.address, waited_ms: CLOSE_TIMEOUT_MS },
        'the broker did not answer the close in time: dropped the connection',
      );
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** A failed attempt's error: our own already say what failed, without their code in front. */
function attemptError(err: unknown): string {
  return err instanceof RpcError ? err.message : reason(err);
}
