import { isSpanContextValid, context as otelContext, trace } from '@opentelemetry/api';
import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import type { Logger } from 'pino';
import { BrokerConnection, type BrokerOptions } from '../connection/broker-connection.ts';
import { QueueMismatchError, RpcError } from '../errors.ts';
import {
  DIRECT_REPLY_TO,
  decodeRequest,
  encodeError,
  encodeResult,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_RESULT,
  readDeadline,
  replyOptions,
  replyToProblem,
  toEnvelope,
} from '../protocol.ts';
import { callAttributes, recordFailure, SpanKind, tracer } from '../spans.ts';
import { ReplyQuarantine } from './reply-quarantine.ts';

export type Handler = (params: unknown, context: HandlerContext) => unknown;

export interface HandlerContext {
  method: string;
  correlationId: string | undefined;
  redelivered: boolean;
}

/**
 * What happened to one delivery; `error` carries the failure for observers such as tracing.
 * ok: answered; invalid: refused before work (error reply); failed: handler threw
 * (error reply); dead_lettered: unusable and nobody to tell; expired: deadline passed.
 */
export type Outcome = 'ok' | 'invalid' | 'failed' | 'dead_lettered' | 'expired';

export interface ServerObserver {
  /** Called once per delivery after it is settled (acked or dead-lettered). */
  settled(method: string, outcome: Outcome, seconds: number, error?: RpcError): void;
  inFlight(count: number): void;
  connected(up: boolean): void;
  /** A delivery the broker flags as redelivered: an earlier consumer took it and never acked it. */
  redelivered?(): void;
  /** A reply the broker returned as unroutable: its reply_to names no queue (never asked over direct reply-to). */
  unroutable?(): void;
}

export interface RpcServerOptions extends Omit<BrokerOptions, 'connectionName' | 'log'> {
  queue: string;
  queueType: 'quorum' | 'classic';
  deliveryLimit: number;
  /** Most messages the dead-letter queue keeps (oldest dropped first); 0: no limit. */
  dlqMaxLength: number;
  /** How long the dead-letter queue keeps a message, in ms; 0: for ever. */
  dlqTtlMs: number;
  prefetch: number;
  maxRequestBytes: number;
  drainTimeoutMs: number;
  /** Method used when a request names none (plain clients such as the tutorial's). */
  defaultMethod: string;
  log: Logger;
  observer?: ServerObserver;
  connectionName?: string;
}

/** Reported as the method of requests naming an unregistered one: client input must not mint labels. */
export const UNKNOWN_METHOD_LABEL = '_unknown';

const noObserver: ServerObserver = { settled() {}, inFlight() {}, connected() {} };

/** The arguments the work queue is declared with; also used by tests and tooling. */
export function workQueueArguments(options: Pick<RpcServerOptions, 'queue' | 'queueType' | 'deliveryLimit'>) {
  return {
    'x-queue-type': options.queueType,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': deadLetterQueue(options.queue),
    ...(options.queueType === 'quorum' ? { 'x-delivery-limit': options.deliveryLimit } : {}),
  };
}

export function deadLetterQueue(queue: string): string {
  return `${queue}.dlq`;
}

/**
 * The arguments the dead-letter queue is declared with. Expired requests land there too, so
 * without a bound it grows for as long as the service runs. Past x-max-length RabbitMQ drops
 * the oldest (its default overflow, drop-head), which keeps the newest evidence. A limit of
 * 0 leaves the argument out: RabbitMQ would read 0 as "keep nothing" (a TTL of 0 drops a
 * message at once).
 */
export function deadLetterQueueArguments(options: Pick<RpcServerOptions, 'queueType' | 'dlqMaxLength' | 'dlqTtlMs'>) {
  return {
    'x-queue-type': options.queueType,
    ...(options.dlqMaxLength > 0 ? { 'x-max-length': options.dlqMaxLength } : {}),
    ...(options.dlqTtlMs > 0 ? { 'x-message-ttl': options.dlqTtlMs } : {}),
  };
}

/**
 * What the server logs when `<queue>.dlq` exists with other arguments (`mismatch`), typically
 * made by a version that did not bound it: it is used as it is, and the message says how to
 * apply the configured bounds without stopping the service, a RabbitMQ policy (the exact
 * command) or deleting the queue so that the next server to start declares it bounded.
 * `vhost` is the broker URL's, for the commands' `-p`.
 */
export function deadLetterQueueKept(
  mismatch: QueueMismatchError,
  options: Pick<RpcServerOptions, 'dlqMaxLength' | 'dlqTtlMs'>,
  vhost = '/',
): string {
  const dlq = mismatch.queue;
  const inVhost = vhost === '/' ? '' : ` -p ${shellWord(vhost)}`;
  const remove =
    `delete it (its messages are lost, and dead letters are dropped until it exists again), ` +
    `e.g. rabbitmqctl delete_queue${inVhost} ${shellWord(dlq)}, and restart the servers`;
  const bounds = [
    ['RPC_DLQ_MAX_LENGTH', 'max-length', options.dlqMaxLength],
    ['RPC_DLQ_TTL_MS', 'message-ttl', options.dlqTtlMs],
  ].filter(([, , value]) => (value as number) > 0) as Array<[string, string, number]>;
  if (bounds.length === 0) {
    return `${mismatch.message}. The server uses it as it is. To have it declared as configured, ${remove}.`;
  }
  const settings = bounds.map(([setting, , value]) => `${setting} (${value})`).join(' and ');
  const definition = JSON.stringify(Object.fromEntries(bounds.map(([, key, value]) => [key, value])));
  const pattern = `^${dlq.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&')}$`;
  const policy =
    `rabbitmqctl set_policy${inVhost} --apply-to queues ${shellWord(`${dlq}-bounds`)} ` +
    `${shellQuote(pattern)} ${shellQuote(definition)}`;
  return (
    `${mismatch.message}. The server uses it as it is: ${settings} ${bounds.length > 1 ? 'are' : 'is'} not applied ` +
    `to it (a queue's arguments are fixed when it is made). To bound it without downtime, either apply ` +
    `${bounds.length > 1 ? 'them' : 'it'} as a policy (unless one already does; a queue follows only one policy, ` +
    `the one of highest priority): ${policy}; or ${remove}: the next one to start declares it bounded.`
  );
}

/** A word for a shell command line: as it is when it is plainly safe, else single-quoted. */
function shellWord(word: string): string {
  return /^[\w.,:@%+=/-]+$/.test(word) ? word : shellQuote(word);
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/** The vhost an AMQP URL names ("/" when it names none), as RabbitMQ and amqplib read it. */
function vhostOf(url: string): string {
  try {
    const path = new URL(url).pathname;
    return path === '' || path === '/' ? '/' : decodeURIComponent(path.slice(1));
  } catch {
    return '/';
  }
}

/** Declares a durable queue; a queue of that name with other arguments becomes a QueueMismatchError. */
async function declare(channel: Channel, queue: string, args: Record<string, unknown>): Promise<void> {
  try {
    await channel.assertQueue(queue, { durable: true, arguments: args });
  } catch (err) {
    // 406 PRECONDITION_FAILED: the broker names the first argument that differs.
    if ((err as { code?: unknown }).code === 406) {
      throw new QueueMismatchError(queue, (err as Error).message, { cause: err });
    }
    throw err;
  }
}

/**
 * Consumes the work queue and answers each request on its reply_to. A request is acked
 * only after its reply is published (at-least-once); bad requests get an error reply, or
 * are dead-lettered when there is nobody to reply to. stop() drains in-flight work.
 */
export class RpcServer {
  readonly #options: RpcServerOptions;
  readonly #handlers = new Map<string, Handler>();
  readonly #observer: ServerObserver;
  readonly #connection: BrokerConnection;
  #channel: Channel | undefined;
  #consumerTag: string | undefined;
  #inFlight = 0;
  #draining = false;
  #idle: (() => void) | undefined;
  /** Checked once: building a log record per request below the level would cost for nothing. */
  readonly #debug: boolean;
  /** Opened on first use: where replies to redelivered requests go (see ReplyQuarantine). */
  #quarantine: ReplyQuarantine | undefined;

  constructor(options: RpcServerOptions) {
    this.#options = options;
    this.#observer = options.observer ?? noObserver;
    this.#debug = options.log.isLevelEnabled('debug');
    this.#connection = new BrokerConnection(
      { ...options, connectionName: options.connectionName ?? 'fib-rpc-server' },
      (model) => this.#setup(model),
      () => this.#lost(),
    );
  }

  /** Registers a handler. It may return a value or a promise; throwing becomes an error reply. */
  handle(method: string, handler: Handler): this {
    this.#handlers.set(method, handler);
    return this;
  }

  /** Connected and consuming, and not draining: what /readyz reports. */
  get ready(): boolean {
    return this.#consumerTag !== undefined && !this.#draining;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get address(): string {
    return this.#connection.address;
  }

  /**
   * Connects, declares the queues and consumes. With `startupTimeoutMs` it waits for the
   * broker (ready stays false meanwhile); stop() ends the wait. Fails with
   * QueueMismatchError at once when the work queue exists with other arguments (a
   * dead-letter queue that does is used as it is, with a warning).
   */
  async start(): Promise<void> {
    await this.#connection.start();
  }

  async #setup(model: ChannelModel): Promise<void> {
    const { queue, prefetch } = this.#options;
    const channel = await model.createChannel();
    channel.on('error', (err: Error) => this.#options.log.warn({ err: err.message }, 'channel error'));
    channel.on('return', () => this.#observer.unroutable?.());
    channel.once('close', () => {
      if (this.#channel !== channel) return;
      this.#lost();
      void this.#connection.recycle();
    });
    // The work queue first: when it exists with other arguments, no dead-letter queue is
    // left behind with this declaration's type to trip the next attempt with other settings.
    await declare(channel, queue, workQueueArguments(this.#options));
    await this.#declareDeadLetterQueue(model);
    await channel.prefetch(prefetch);
    this.#channel = channel;
    if (this.#draining) return;
    const { consumerTag } = await channel.consume(queue, (msg) => this.#deliver(channel, msg));
    this.#consumerTag = consumerTag;
    this.#observer.connected(true);
    this.#options.log.info({ queue, prefetch, broker: this.address }, 'awaiting RPC requests');
  }

  /**
   * Declares `<queue>.dlq` on a channel of its own. When it exists with other arguments (one
   * made before the DLQ was bounded, say) it is used as it is, with a warning that says how
   * to bound it: refusing to start would stall a rolling upgrade on a queue that works. The
   * broker closes the channel of a refused declaration, so it must not be the server's.
   */
  async #declareDeadLetterQueue(model: ChannelModel): Promise<void> {
    const { log } = this.#options;
    const dlq = deadLetterQueue(this.#options.queue);
    const channel = await model.createChannel();
    // The declaration's rejection carries the broker's reason; this channel serves nothing else.
    channel.on('error', (err: Error) => log.debug({ err: err.message }, 'dead-letter queue declaration refused'));
    try {
      await declare(channel, dlq, deadLetterQueueArguments(this.#options));
    } catch (err) {
      if (!(err instanceof QueueMismatchError)) {
        await channel.close().catch(() => {});
        throw err;
      }
      // That channel is closed now; a passive check on a new one makes sure the queue is there.
      const check = await model.createChannel();
      check.on('error', (e: Error) => log.debug({ err: e.message }, 'dead-letter queue check failed'));
      try {
        const { messageCount } = await check.checkQueue(dlq);
        log.warn(
          { queue: dlq, messages: messageCount },
          deadLetterQueueKept(err, this.#options, vhostOf(this.#options.url)),
        );
      } finally {
        await check.close().catch(() => {});
      }
      return;
    }
    await channel.close();
  }

  #lost(): void {
    this.#channel = undefined;
    this.#consumerTag = undefined;
    this.#observer.connected(false);
  }

  #deliver(channel: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled us (queue deleted): start over to re-declare it.
      this.#options.log.warn({ queue: this.#options.queue }, 'consumer cancelled by the broker');
      void this.#connection.recycle();
      return;
    }
    this.#inFlight++;
    this.#observer.inFlight(this.#inFlight);
    if (msg.fields.redelivered) this.#observer.redelivered?.();
    const started = performance.now();
    const settle = (method: string, outcome: Outcome, error?: RpcError) => {
      this.#observer.settled(method, outcome, (performance.now() - started) / 1000, error);
      this.#inFlight--;
      this.#observer.inFlight(this.#inFlight);
      if (this.#inFlight === 0) this.#idle?.();
    };
    let method = this.#options.defaultMethod;
    let plainText = false;
    try {
      const deadline = readDeadline(msg);
      if (deadline !== undefined && deadline < Date.now()) {
        channel.ack(msg);
        settle(method, 'expired');
        return;
      }
      const request = decodeRequest(msg, this.#options.defaultMethod, this.#options.maxRequestBytes);
      method = request.method;
      plainText = request.plainText;
      const handler = this.#handlers.get(method);
      if (handler === undefined) {
        method = UNKNOWN_METHOD_LABEL;
        throw new RpcError('UNKNOWN_METHOD', `unknown method "${request.method.slice(0, 100)}"`, false);
      }
      const context: HandlerContext = {
        method,
        correlationId: msg.properties.correlationId as string | undefined,
        redelivered: msg.fields.redelivered,
      };
      const parent = otelContext.active();
      const span = tracer.startSpan(
        `handle ${method}`,
        { kind: SpanKind.INTERNAL, attributes: callAttributes(method, this.#options.queue) },
        parent,
      );
      let result: unknown;
      try {
        // The handler runs in its span's context, except when the span carries no trace
        // (tracing off): then there is nothing to propagate and no context to make.
        result = isSpanContextValid(span.spanContext())
          ? otelContext.with(trace.setSpan(parent, span), handler, undefined, request.params, context)
          : handler(request.params, context);
      } catch (err) {
        const error = asRpcError(err);
        recordFailure(span, error);
        span.end();
        throw error;
      }
      if (result instanceof Promise) {
        result.then(
          (value) => {
            span.end();
            this.#reply(channel, msg, plainText, value, undefined, method, settle);
          },
          (err: unknown) => {
            const error = asRpcError(err);
            recordFailure(span, error);
            span.end();
            this.#reply(channel, msg, plainText, undefined, error, method, settle);
          },
        );
      } else {
        span.end();
        this.#reply(channel, msg, plainText, result, undefined, method, settle);
      }
    } catch (err) {
      this.#reply(channel, msg, plainText, undefined, asRpcError(err), method, settle);
    }
  }

  #reply(
    channel: Channel,
    msg: ConsumeMessage,
    plainText: boolean,
    result: unknown,
    error: RpcError | undefined,
    method: string,
    settle: (method: string, outcome: Outcome, error?: RpcError) => void,
  ): void {
    const outcome: Outcome =
      error === undefined
        ? 'ok'
        : error.code === 'INVALID_REQUEST' || error.code === 'UNKNOWN_METHOD'
          ? 'invalid'
          : 'failed';
    if (channel !== this.#channel) {
      // The channel this came on is gone: the broker redelivers the request elsewhere.
      settle(method, outcome, error);
      return;
    }
    const { replyTo, correlationId } = msg.properties;
    const unanswerable =
      replyToProblem(replyTo) ??
      (typeof correlationId !== 'string' || correlationId === '' ? 'the request has no correlation_id' : null);
    if (unanswerable !== null) {
      // Nobody could receive or match a reply: keep the message visible in the dead-letter queue.
      channel.nack(msg, false, false);
      this.#options.log.debug(
        { code: error?.code, reason: unanswerable },
        'dead-lettered a request nobody can be answered for',
      );
      settle(method, 'dead_lettered', error);
      return;
    }
    try {
      const body = error === undefined ? encodeResult(result, plainText) : encodeError(toEnvelope(error), plainText);
      const options = replyOptions(msg, plainText, error ? REPLY_TYPE_ERROR : REPLY_TYPE_RESULT);
      if (msg.fields.redelivered && replyTo.startsWith(`${DIRECT_REPLY_TO}.`)) {
        // Its last delivery may have ended with the broker closing our connection over its reply.
        this.#replyInQuarantine(
          channel,
          msg,
          replyTo,
          body,
          options,
          () => settle(method, outcome, error),
          () => settle(method, 'dead_lettered', error),
        );
        return;
      }
      channel.publish('', replyTo, body, options);
      channel.ack(msg);
      settle(method, outcome, error);
      if (this.#debug) this.#options.log.debug({ method, outcome, correlationId }, 'request settled');
    } catch (err) {
      // E.g. a header table too large to encode: the request cannot be answered.
      channel.nack(msg, false, false);
      this.#options.log.warn({ err: (err as Error).message }, 'could not publish a reply; dead-lettered the request');
      settle(method, 'dead_lettered', asRpcError(err));
    }
  }

  #replyInQuarantine(
    channel: Channel,
    msg: ConsumeMessage,
    replyTo: string,
    body: Buffer,
    options: Options.Publish,
    answered: () => void,
    deadLettered: () => void,
  ): void {
    this.#quarantine ??= new ReplyQuarantine({
      ...this.#options,
      connectionName: this.#options.connectionName ?? 'fib-rpc-server',
    });
    void this.#quarantine.publish(replyTo, body, options).then((result) => {
      if (channel !== this.#channel) {
        // The request is back in the queue already; a duplicate reply is dropped by the caller.
        answered();
      } else if (result === 'confirmed') {
        channel.ack(msg);
        answered();
      } else if (result === 'refused') {
        channel.nack(msg, false, false);
        this.#options.log.warn(
          { correlationId: msg.properties.correlationId },
          'the broker dropped the connection over this reply_to: dead-lettered the request',
        );
        deadLettered();
      } else {
        // The quarantine connection failed for another reason (or cannot be opened): reply the
        // ordinary way rather than requeue, which could spin if it stays unavailable.
        try {
          channel.publish('', replyTo, body, options);
          channel.ack(msg);
          answered();
        } catch {
          channel.nack(msg, false, false);
          deadLettered();
        }
      }
    });
  }

  /**
   * Drains: stops taking requests, finishes and answers those in flight (up to
   * drainTimeoutMs), then closes. Unfinished requests go back to the queue.
   */
  async stop(): Promise<{ drained: boolean; abandoned: number }> {
    this.#draining = true;
    const channel = this.#channel;
    const tag = this.#consumerTag;
    this.#consumerTag = undefined;
    if (channel && tag) await channel.cancel(tag).catch(() => {});
    let drained = true;
    if (this.#inFlight > 0) {
      drained = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), this.#options.drainTimeoutMs);
        this.#idle = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
    }
    const abandoned = this.#inFlight;
    this.#channel = undefined;
    await channel?.close().catch(() => {});
    await this.#quarantine?.close();
    await this.#connection.close();
    this.#observer.connected(false);
    return { drained, abandoned };
  }
}

/** A handler's throw as the caller will see it: RpcErrors as they are, anything else as HANDLER_ERROR. */
function asRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  const error = new RpcError('HANDLER_ERROR', err instanceof Error ? err.message : String(err), false);
  if (err instanceof Error) error.name = err.name;
  return error;
}
