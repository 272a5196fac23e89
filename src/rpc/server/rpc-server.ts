import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import type { Logger } from 'pino';
import { CLOSE_TIMEOUT_MS, within } from '../connection/bounded-close.ts';
import { vhostOf } from '../connection/broker-addresses.ts';
import { BrokerConnection } from '../connection/broker-connection.ts';
import type { BrokerOptions } from '../connection/open-connection.ts';
import { replyIsMandatory, replyNeedsQuarantine, replyToProblem } from '../connection/reply-address.ts';
import { asRpcError, QueueMismatchError, type RpcError } from '../errors.ts';
import type { Method } from '../method.ts';
import {
  encodeError,
  encodeResult,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_RESULT,
  replyOptions,
  requestedMethod,
  toEnvelope,
} from '../protocol.ts';
import { RpcSpans } from '../spans.ts';
import type { Outcome, ServerObserver } from './observer.ts';
import {
  type Admission,
  admit,
  type Handler,
  type HandlerContext,
  invoke,
  methodLabel,
  type Reply,
  type Route,
} from './pipeline.ts';
import {
  deadLetterQueue,
  deadLetterQueueArguments,
  deadLetterQueueKept,
  declare,
  type QueueSettings,
  workQueueArguments,
} from './queues.ts';
import { recount, seenBefore } from './redelivery-count.ts';
import { ReplyQuarantine } from './reply-quarantine.ts';

export interface RpcServerOptions extends Omit<BrokerOptions, 'connectionName' | 'log'>, QueueSettings {
  /** Names the tracer, the spans' rpc.system and the broker connection (`<serviceName>-server`). */
  serviceName: string;
  prefetch: number;
  maxRequestBytes: number;
  drainTimeoutMs: number;
  /** Method used when a request names none (plain clients such as the tutorial's). */
  defaultMethod: string;
  log: Logger;
  observer?: ServerObserver;
  connectionName?: string;
}

type Settle = (method: string, outcome: Outcome, error?: RpcError<string>) => void;

/** One request on its way through the server, with what is read of it once. */
interface Delivery {
  channel: Channel;
  msg: ConsumeMessage;
  /** seenBefore(msg): the handler's context and the reply quarantine both ask. */
  redelivered: boolean;
  settle: Settle;
}

/**
 * Consumes the work queue and answers each request on its reply_to. A request is acked
 * only after its reply is published (at-least-once); bad requests get an error reply, or
 * are dead-lettered when there is nobody to reply to. stop() drains in-flight work.
 * Each delivery goes admit → invoke → send (see pipeline.ts).
 */
export class RpcServer implements AsyncDisposable {
  readonly #options: RpcServerOptions;
  readonly #routes = new Map<string, Route>();
  readonly #observer: ServerObserver;
  readonly #spans: RpcSpans;
  readonly #connectionName: string;
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
    this.#observer = options.observer ?? {};
    this.#spans = new RpcSpans(options.serviceName);
    this.#debug = options.log.isLevelEnabled('debug');
    this.#connectionName = options.connectionName ?? `${options.serviceName}-server`;
    this.#connection = new BrokerConnection(
      { ...options, connectionName: this.#connectionName },
      (model) => this.#setup(model),
      () => this.#lost(),
    );
    this.#connection.watchBlocked((blocked, reason) => {
      this.#observer.blocked?.(blocked, this.address, reason);
    });
  }

  /**
   * Implements a defined method: the handler gets the params as the definition's parse()
   * returns them (its InvalidRequestError becomes the caller's), and returns the result
   * or a promise of it; throwing becomes an error reply.
   */
  implement<Params, Result>(
    method: Method<Params, Result>,
    handler: (params: Params, context: HandlerContext) => Result | Promise<Result>,
  ): this {
    this.#routes.set(method.name, { handler: handler as Handler, parse: method.parse });
    return this;
  }

  /** Registers a handler for a method by name, taking the params as they arrive (parsed JSON). */
  handle(method: string, handler: Handler): this {
    this.#routes.set(method, { handler, parse: undefined });
    return this;
  }

  /** Connected and consuming, and not draining: what /readyz reports. */
  get ready(): boolean {
    return this.#consumerTag !== undefined && !this.#draining;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** The broker in use: scheme://host:port/vhost, no credentials. */
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
    this.#observer.connected?.(true, this.address);
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
          deadLetterQueueKept(err, this.#options, vhostOf(this.#connection.url)),
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
    this.#observer.connected?.(false, this.address);
  }

  #deliver(channel: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled us (queue deleted): start over to re-declare it.
      this.#options.log.warn({ queue: this.#options.queue }, 'consumer cancelled by the broker');
      void this.#connection.recycle();
      return;
    }
    if (msg.fields.redelivered) {
      this.#observer.redelivered?.();
      if (this.#options.queueType === 'classic' && this.#recount(channel, msg)) return;
    }
    this.#inFlight++;
    this.#observer.inFlight?.(this.#inFlight);
    const started = performance.now();
    const settle: Settle = (method, outcome, error) => {
      this.#observer.settled?.(method, outcome, (performance.now() - started) / 1000, error);
      this.#inFlight--;
      this.#observer.inFlight?.(this.#inFlight);
      if (this.#inFlight === 0) this.#idle?.();
    };
    const { defaultMethod, maxRequestBytes, queue } = this.#options;
    const admission: Admission = admit(msg, this.#routes, defaultMethod, maxRequestBytes);
    if (admission.kind === 'expired') {
      channel.ack(msg);
      settle(admission.method, 'expired');
      return;
    }
    const delivery: Delivery = { channel, msg, redelivered: seenBefore(msg), settle };
    if (admission.kind === 'refused') {
      this.#send(delivery, admission.plainText, { kind: 'error', error: admission.error }, admission.method);
      return;
    }
    const reply = invoke(admission, msg, delivery.redelivered, this.#spans, queue);
    if (reply instanceof Promise) {
      reply.then((done) => this.#send(delivery, admission.plainText, done, admission.method));
    } else {
      this.#send(delivery, admission.plainText, reply, admission.method);
    }
  }

  /**
   * A classic queue's delivery limit (see redelivery-count.ts): true when the delivery was
   * requeued counted or dead-lettered, false when the count could not be taken (it is then
   * served as it is, as before the limit existed).
   */
  #recount(channel: Channel, msg: ConsumeMessage): boolean {
    let done: 'requeued' | 'dead_lettered';
    try {
      done = recount(channel, this.#options.queue, msg, this.#options.deliveryLimit);
    } catch (err) {
      this.#options.log.warn({ err: (err as Error).message }, 'could not count a redelivery; serving it as it is');
      return false;
    }
    if (done === 'dead_lettered') {
      const method = methodLabel(requestedMethod(msg, this.#options.defaultMethod), this.#routes);
      this.#observer.settled?.(method, 'dead_lettered', 0);
      this.#options.log.warn(
        { correlationId: msg.properties.correlationId, deliveryLimit: this.#options.deliveryLimit },
        'dead-lettered a request that came back more often than the delivery limit (a poison message?)',
      );
    }
    return true;
  }

  /** Publishes the reply and acks, or dead-letters a request nobody can be answered for. */
  #send(delivery: Delivery, plainText: boolean, reply: Reply, method: string): void {
    const { channel, msg, settle } = delivery;
    const error = reply.kind === 'error' ? reply.error : undefined;
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
      const body =
        reply.kind === 'result'
          ? encodeResult(reply.value, plainText)
          : encodeError(toEnvelope(reply.error), plainText);
      const options = replyOptions(
        msg,
        plainText,
        reply.kind === 'result' ? REPLY_TYPE_RESULT : REPLY_TYPE_ERROR,
        replyIsMandatory(replyTo),
      );
      if (replyNeedsQuarantine(replyTo, delivery.redelivered)) {
        this.#replyInQuarantine(
          delivery,
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
    { channel, msg }: Delivery,
    replyTo: string,
    body: Buffer,
    options: Options.Publish,
    answered: () => void,
    deadLettered: () => void,
  ): void {
    // On the node the server is connected to: the culprit's address is judged by the same broker.
    this.#quarantine ??= new ReplyQuarantine({
      ...this.#options,
      url: this.#connection.url,
      connectionName: this.#connectionName,
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
   * drainTimeoutMs), then closes. Unfinished requests go back to the queue. While the broker
   * blocks the connection (a resource alarm), it reads neither the cancel nor the replies and
   * acks: stop() does not wait for it, and the requests come back to the queue unacked once
   * the connection is gone, for another server to answer.
   */
  async stop(): Promise<{ drained: boolean; abandoned: number }> {
    this.#draining = true;
    const channel = this.#channel;
    const tag = this.#consumerTag;
    this.#consumerTag = undefined;
    if (channel && tag && !this.#connection.blocked) await within(channel.cancel(tag), CLOSE_TIMEOUT_MS);
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
    if (channel !== undefined) await this.#connection.closeChannel(channel);
    await this.#quarantine?.close();
    await this.#connection.close();
    this.#observer.connected?.(false, this.address);
    return { drained, abandoned };
  }

  /** `await using server = …` stops it (draining) at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
