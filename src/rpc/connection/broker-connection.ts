import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import amqp, { type ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import { ConnectionFailedError, RpcError } from '../errors.ts';

export interface BrokerOptions {
  url: string;
  heartbeatS: number;
  connectTimeoutMs: number;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** Shown in the management UI as the connection name. */
  connectionName: string;
  log: Logger;
  /** Reconnect backoff: the first delay (default 100 ms) and the cap (default 2 s). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /**
   * The first connection: undefined makes one attempt and fails at once (a one-shot client);
   * a number keeps trying with the reconnect backoff for that many ms, 0 for ever (a server).
   */
  startupTimeoutMs?: number;
}

/**
 * The reconnect delay cap. A broker that comes back is found again within about this long
 * (plus the connection set-up), which keeps recovery after a broker restart under 5 s;
 * full jitter spreads many replicas' attempts over the whole interval.
 */
const DEFAULT_MAX_DELAY_MS = 2000;

/** Failed connection attempts are logged at warn at most this often (the others at debug). */
const FAILURE_WARN_INTERVAL_MS = 10_000;

/** Called after every (re)connection; throwing makes the attempt count as failed. */
export type SetupFn = (model: ChannelModel) => Promise<void>;

/** The broker's address for messages and errors: scheme, host, port and vhost, never credentials. */
export function describeBroker(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.protocol}//${url.host}${url.pathname && url.pathname !== '/' ? url.pathname : ''}`;
  } catch {
    return '<invalid broker url>';
  }
}

function socketOptions(options: BrokerOptions): Record<string, unknown> {
  const tls = options.tls ?? {};
  return {
    // Without it a lone request waits ~40 ms for Nagle + delayed ACK.
    noDelay: true,
    timeout: options.connectTimeoutMs,
    clientProperties: { connection_name: options.connectionName },
    ...(tls.caFile ? { ca: [readFileSync(tls.caFile)] } : {}),
    ...(tls.certFile ? { cert: readFileSync(tls.certFile) } : {}),
    ...(tls.keyFile ? { key: readFileSync(tls.keyFile) } : {}),
  };
}

function withHeartbeat(raw: string, heartbeatS: number): string {
  const url = new URL(raw);
  if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(heartbeatS));
  return url.toString();
}

/**
 * One plain connection with the options' URL, heartbeat, TLS files and name, without any
 * recovery: for short-lived or auxiliary connections. Fails with ConnectionFailedError.
 */
export async function openConnection(options: BrokerOptions): Promise<ChannelModel> {
  try {
    const model = await amqp.connect(withHeartbeat(options.url, options.heartbeatS), socketOptions(options));
    watchSilence(model);
    coalesceWrites(model);
    return model;
  } catch (err) {
    throw new ConnectionFailedError(`cannot connect to the broker at ${describeBroker(options.url)}: ${reason(err)}`, {
      cause: err,
    });
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/**
 * One broker connection that comes back by itself: after an unexpected close it
 * reconnects with capped exponential backoff (full jitter) and runs `setup` again so the
 * owner can re-create channels, queues and consumers.
 */
export class BrokerConnection {
  readonly #options: BrokerOptions;
  readonly #setup: SetupFn;
  readonly #onLost: (err: Error) => void;
  readonly #address: string;
  #model: ChannelModel | undefined;
  #closing = false;
  #reconnecting = false;

  constructor(options: BrokerOptions, setup: SetupFn, onLost: (err: Error) => void) {
    this.#options = options;
    this.#setup = setup;
    this.#onLost = onLost;
    this.#address = describeBroker(options.url);
  }

  get address(): string {
    return this.#address;
  }

  get connected(): boolean {
    return this.#model !== undefined;
  }

  /**
   * First connection. Without `startupTimeoutMs`: one attempt, failing with
   * ConnectionFailedError naming the host. With it: attempts with the reconnect backoff
   * until one succeeds, close() is called (then it returns unconnected), or the time is up
   * (0: never), then fails with ConnectionFailedError. A set-up the broker refuses for good
   * (a non-retryable RpcError such as QueueMismatchError) fails at once either way.
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
            { broker: this.#address, attempts: attempt + 1, waited_ms: Math.round(performance.now() - began) },
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
        await sleep(Math.min(left, this.#backoff(attempt)));
      }
    }
  }

  async #connectOnce(): Promise<void> {
    const model = await openConnection(this.#options);
    let gone = false;
    model.on('error', (err: Error) => this.#options.log.debug({ err: reason(err) }, 'broker connection error'));
    model.on('blocked', (why: string) => this.#options.log.warn({ reason: why }, 'broker blocked publishing'));
    model.on('unblocked', () => this.#options.log.info('broker unblocked publishing'));
    model.once('close', (err?: Error) => {
      gone = true;
      // Only the connection in use is recovered; one lost during set-up is its retry loop's.
      if (this.#model === model) this.#closed(err);
    });
    try {
      await this.#setup(model);
    } catch (err) {
      await model.close().catch(() => {});
      if (err instanceof RpcError && !err.retryable) throw err;
      throw new ConnectionFailedError(`broker at ${this.#address} refused set-up: ${reason(err)}`, {
        cause: err,
      });
    }
    if (gone) throw new ConnectionFailedError(`the connection to ${this.#address} closed during set-up`);
    if (this.#closing) {
      // close() came while this attempt was under way: nobody else would close this one.
      await model.close().catch(() => {});
      return;
    }
    this.#model = model;
  }

  #closed(err?: Error): void {
    this.#model = undefined;
    if (this.#closing) return;
    const lost = err ?? new Error('connection closed by the broker');
    this.#options.log.warn({ broker: this.#address, err: reason(lost) }, 'lost the broker connection, reconnecting');
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
          this.#options.log.info({ broker: this.#address, attempt: attempt + 1 }, 'reconnected to the broker');
          return;
        } catch (err) {
          failed(err, attempt + 1);
        }
      }
    } finally {
      this.#reconnecting = false;
    }
  }

  /** Capped exponential backoff with full jitter: the wait after `attempt` (from 0) failed attempts. */
  #backoff(attempt: number): number {
    const initial = this.#options.initialDelayMs ?? 100;
    const cap = this.#options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    return Math.random() * Math.min(cap, initial * 2 ** attempt);
  }

  /**
   * Failed attempts come every second or two for as long as the broker is away: each is
   * logged at debug, and one per FAILURE_WARN_INTERVAL_MS at warn, so a long outage still
   * says what is wrong without flooding the log.
   */
  #failureLog(message: string, began: number): (err: unknown, attempt: number) => void {
    let warned = Number.NEGATIVE_INFINITY;
    return (err, attempt) => {
      const now = performance.now();
      const fields = { broker: this.#address, attempt, waited_ms: Math.round(now - began), err: attemptError(err) };
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
    await this.#model?.close().catch(() => {});
  }

  async close(): Promise<void> {
    this.#closing = true;
    const model = this.#model;
    this.#model = undefined;
    await model?.close().catch(() => {});
  }
}

/**
 * Notices a half-open connection (the broker or the path to it gone without a FIN or RST)
 * within two heartbeat intervals. RabbitMQ sends a heartbeat every half interval when it has
 * nothing else to send, so 1.5 intervals without a byte means three are missing; the socket
 * is then destroyed, which closes the connection like any network error. amqplib's own check
 * runs once per interval and gives up after two silent ones, i.e. after two to three
 * intervals; it stays as the backstop and keeps sending our heartbeats.
 */
function watchSilence(model: ChannelModel): void {
  const connection = (model as unknown as { connection?: { heartbeat?: number; stream?: Socket } }).connection;
  const heartbeatMs = (connection?.heartbeat ?? 0) * 1000;
  const socket = connection?.stream;
  if (heartbeatMs <= 0 || socket === undefined || typeof socket.bytesRead !== 'number') return;
  const periodMs = heartbeatMs / 8;
  const limitMs = heartbeatMs * 1.5;
  let bytes = socket.bytesRead;
  let seen = performance.now();
  let tick = seen;
  const timer = setInterval(() => {
    const now = performance.now();
    // A late tick means our event loop was blocked: bytes may be waiting unread, so no verdict.
    const late = now - tick > 2 * periodMs;
    tick = now;
    if (late || socket.bytesRead !== bytes) {
      bytes = socket.bytesRead;
      seen = now;
    } else if (now - seen >= limitMs) {
      clearInterval(timer);
      socket.destroy(
        new Error(`no data from the broker for ${Math.round(now - seen)} ms (heartbeat ${heartbeatMs / 1000} s)`),
      );
    }
  }, periodMs);
  timer.unref();
  model.once('close', () => clearInterval(timer));
}

/**
 * amqplib queues each frame batch (a publish, an ack) as its own chunk and its muxer, once
 * per event-loop turn, hands the chunks to the socket one write() at a time: with
 * TCP_NODELAY on, each is a write(2) and a TCP segment of its own, which under load is
 * most of the CPU time of the client, the server and the broker's reader. Corking the
 * socket for that one pass sends the turn's chunks in one writev(2): the same bytes in the
 * same order, sent at the same moment, in fewer segments. Nothing is held back past the
 * pass, so a lone call's latency is unchanged. Skipped if amqplib's internals change shape.
 */
function coalesceWrites(model: ChannelModel): void {
  const connection = (model as unknown as { connection?: { stream?: Partial<Socket>; muxer?: Muxer } }).connection;
  const socket = connection?.stream;
  const muxer = connection?.muxer;
  const pass = muxer?._readIncoming;
  if (socket?.cork === undefined || socket.uncork === undefined || muxer === undefined || pass === undefined) return;
  muxer._readIncoming = function corked(this: Muxer) {
    socket.cork?.();
    try {
      pass.call(this);
    } finally {
      socket.uncork?.();
    }
  };
}

interface Muxer {
  _readIncoming?: () => void;
}

/** A failed attempt's error: our own already say what failed, without their code in front. */
function attemptError(err: unknown): string {
  return err instanceof RpcError ? err.message : reason(err);
}

export function reason(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
