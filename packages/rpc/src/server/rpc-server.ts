import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { CLOSE_TIMEOUT_MS, within } from '../connection/bounded-close.ts';
import { vhostOf } from '../connection/broker-addresses.ts';
import { BrokerConnection } from '../connection/broker-connection.ts';
import { type ConnectionOptions, openConnection } from '../connection/open-connection.ts';
import { SERVER_DEFAULTS, withDefaults } from '../defaults.ts';
import { asRpcError } from '../errors.ts';
import { guardObserver, thrownMessage } from '../hooks.ts';
import { type Logger, stderrLogger } from '../logger.ts';
import type { Method } from '../method.ts';
import { requestedMethod } from '../protocol.ts';
import { RpcSpans } from '../spans.ts';
import { SERVER_HOOKS, type ServerObserver } from './observer.ts';
import {
  type Admission,
  admit,
  type Handler,
  type HandlerContext,
  invoke,
  markRefused,
  methodLabel,
  type Route,
} from './pipeline.ts';
import {
  type DeadLetterOptionNames,
  declare,
  declareDeadLetterQueue,
  type QueueSettings,
  workQueueArguments,
} from './queues.ts';
import { recount, seenBefore } from './redelivery-count.ts';
import { type Delivery, Replier, type Settle } from './replier.ts';
import { ReplyQuarantine } from './reply-quarantine.ts';

/**
 * Only `url` is needed (and `methods`, or implement() and handle() afterwards); everything
 * else has a default (SERVER_DEFAULTS, in the README's "Options"). A key given as undefined
 * keeps its default.
 */
export interface RpcServerOptions extends ConnectionOptions {
  /** The methods served, each made by implement(method, handler). */
  methods?: Iterable<Implementation>;
  /** Names the tracer, the spans' rpc.system and the broker connection (`<serviceName>-server`). */
  serviceName?: string;
  /** The work queue; its dead-letter queue is `<queue>.dlq`. */
  queue?: string;
  queueType?: QueueSettings['queueType'];
  /** Deliveries of one request before it is dead-lettered (a poison message). */
  deliveryLimit?: number;
  /** Most messages the dead-letter queue keeps (oldest dropped first); 0: no limit. */
  dlqMaxLength?: number;
  /** How long the dead-letter queue keeps a message, in ms; 0: for ever. */
  dlqTtlMs?: number;
  /** Requests worked on at once (unacknowledged deliveries). */
  prefetch?: number;
  /** Larger request bodies are refused before they are parsed. */
  maxRequestBytes?: number;
  /** How long stop() waits for the requests in flight. */
  drainTimeoutMs?: number;
  /** Method used when a request names none (plain clients such as the tutorial's); '' (default): none. */
  defaultMethod?: string;
  observer?: ServerObserver;
  /** What the operator calls the dead-letter options, for the message when the queue exists with others (e.g. env vars). */
  optionNames?: DeadLetterOptionNames;
  /** How long start() keeps trying to reach the broker, in ms; 0 (default): for ever. */
  startupTimeoutMs?: number;
}

/** The options with every default filled in. */
type ServerSettings = Omit<RpcServerOptions, keyof typeof SERVER_DEFAULTS | 'log'> &
  typeof SERVER_DEFAULTS & { log: Logger };

/** A method and its handler, for RpcServerOptions.methods: made by implement(). */
export interface Implementation {
  readonly name: string;
  readonly route: Route;
}

/**
 * A defined method with its handler, typed by the definition: the handler gets the params as
 * the definition's parse() returns them and returns the result or a promise of it.
 */
export function implement<Params, Result>(
  method: Method<Params, Result>,
  handler: (params: Params, context: HandlerContext) => Result | Promise<Result>,
): Implementation {
  return { name: method.name, route: { handler: handler as Handler, parse: method.parse } };
}

/**
 * Consumes the work queue and answers each request on its reply_to. A request is acked
 * only after its reply is published (at-least-once); bad requests get an error reply, or
 * are dead-lettered when there is nobody to reply to. stop() drains in-flight work.
 * Each delivery goes admit → invoke → send (see pipeline.ts).
 */
export class RpcServer implements AsyncDisposable {
  readonly #options: ServerSettings;
  readonly #routes = new Map<string, Route>();
  /** The caller's hooks, guarded: one that throws is logged and counted, never ends the process. */
  readonly #observer: ServerObserver;
  readonly #hookFailures: () => number;
  readonly #spans: RpcSpans;
  readonly #connectionName: string;
  readonly #connection: BrokerConnection;
  #channel: Channel | undefined;
  #consumerTag: string | undefined;
  #inFlight = 0;
  #draining = false;
  #idle: (() => void) | undefined;
  readonly #replier: Replier;

  /** `open` is amqplib's connect behind openConnection (this one's and the quarantine's); tests pass their own. */
  constructor(serverOptions: RpcServerOptions, open: typeof openConnection = openConnection) {
    const options: ServerSettings = withDefaults({ ...SERVER_DEFAULTS, log: stderrLogger }, serverOptions);
    this.#options = options;
    for (const { name, route } of options.methods ?? []) this.#routes.set(name, route);
    const observer = guardObserver(options.observer ?? {}, SERVER_HOOKS, options.log);
    this.#observer = observer.hooks;
    this.#hookFailures = observer.failures;
    this.#spans = new RpcSpans(options.serviceName);
    this.#connectionName = options.connectionName ?? `${options.serviceName}-server`;
    this.#connection = new BrokerConnection(
      { ...options, connectionName: this.#connectionName },
      (model) => this.#setup(model),
      () => this.#lost(),
      open,
    );
    this.#replier = new Replier(
      options.log,
      (channel) => channel === this.#channel,
      // On the node the server is connected to: the culprit's address is judged by the same broker.
      () => new ReplyQuarantine({ ...options, url: this.#connection.url, connectionName: this.#connectionName }, open),
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
    const { name, route } = implement(method, handler);
    this.#routes.set(name, route);
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

  /** How often an observer hook has thrown (each logged at warn and ignored): what /metrics counts. */
  get hookFailures(): number {
    return this.#hookFailures();
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
    const { log, optionNames } = this.#options;
    await declareDeadLetterQueue(model, this.#options, vhostOf(this.#connection.url), log, optionNames);
    await channel.prefetch(prefetch);
    this.#channel = channel;
    if (this.#draining) return;
    const { consumerTag } = await channel.consume(queue, (msg) => {
      try {
        this.#deliver(channel, msg);
      } catch (err) {
        // Not expected (every step is guarded); were it to happen, amqplib would take the
        // throw for its own and close the connection, so it is logged here instead.
        this.#options.log.error({ err: thrownMessage(err) }, 'a delivery failed unexpectedly');
      }
    });
    this.#consumerTag = consumerTag;
    this.#observer.connected?.(true, this.address);
    this.#options.log.info({ queue, prefetch, broker: this.address }, 'awaiting RPC requests');
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
    let settled = false;
    const settle: Settle = (method, outcome, error) => {
      // Once per delivery, so that the in-flight count (and the drain waiting on it) stays right.
      if (settled) return;
      settled = true;
      this.#observer.settled?.(method, outcome, (performance.now() - started) / 1000, error);
      this.#inFlight--;
      this.#observer.inFlight?.(this.#inFlight);
      if (this.#inFlight === 0) this.#idle?.();
    };
    const { defaultMethod, maxRequestBytes, queue } = this.#options;
    const admission: Admission = admit(msg, this.#routes, defaultMethod, maxRequestBytes);
    if (admission.kind === 'expired') {
      this.#replier.onChannel('ack an expired request', () => channel.ack(msg));
      settle(admission.method, 'expired');
      return;
    }
    // traceContext is set by invoke() or markRefused() when the request is traced; declared here so every delivery has one shape.
    const delivery: Delivery = { channel, msg, redelivered: seenBefore(msg), settle, traceContext: undefined };
    if (admission.kind === 'refused') {
      markRefused(delivery, this.#spans, admission.method, queue, admission.error);
      this.#replier.send(delivery, admission.plainText, { kind: 'error', error: admission.error }, admission.method);
      return;
    }
    const reply = invoke(admission, delivery, this.#spans, queue);
    if (reply instanceof Promise) {
      reply
        .then((done) => this.#replier.send(delivery, admission.plainText, done, admission.method))
        .catch((err: unknown) => {
          // Not expected (invoke() turns a handler's throw into a reply, and the Replier guards its
          // steps); without this catch it would be an unhandled rejection that ends the process.
          this.#options.log.error({ err: thrownMessage(err) }, 'could not settle a request');
          settle(admission.method, 'failed', asRpcError(err));
        });
    } else {
      this.#replier.send(delivery, admission.plainText, reply, admission.method);
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
    await this.#replier.close();
    await this.#connection.close();
    this.#observer.connected?.(false, this.address);
    return { drained, abandoned };
  }

  /** `await using server = …` stops it (draining) at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
