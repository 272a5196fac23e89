import { EventEmitter } from 'node:events';
import type { Channel, ChannelModel, ConsumeMessage, Message, MessageProperties, Options } from 'amqplib';
import type { BrokerOptions, OpenedConnection } from '../../src/connection/open-connection.ts';

/** What a test channel was asked to publish. */
export interface Published {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

/** One operation on the channel, in the order it came: what tests of "reply, then ack" read. */
export type Operation =
  | { op: 'publish'; routingKey: string }
  | { op: 'ack'; deliveryTag: number }
  | { op: 'nack'; deliveryTag: number; requeue: boolean }
  | { op: 'cancel' }
  | { op: 'close' };

/**
 * Just enough of an amqplib Channel for the units of client and server: it records
 * publishes, acks and nacks in order, says "buffer full" when told to and emits 'drain' on
 * demand (a socket under back-pressure), hands deliveries to its consumer, and, once broken,
 * throws from ack, nack and publish as amqplib does on a channel that has closed.
 */
export class FakeChannel extends EventEmitter {
  readonly published: Published[] = [];
  readonly operations: Operation[] = [];
  /** publish() returns false (the socket buffer is full) while this is set. */
  full = false;
  /** ack, nack and publish throw "Channel closed" while this is set. */
  broken = false;
  closed = false;
  prefetchCount = 0;
  readonly declared: Array<{ queue: string; options: Options.AssertQueue | undefined }> = [];
  #consumer: ((msg: ConsumeMessage | null) => void) | undefined;
  /** Confirm channels call back on publish; the callback waits until confirm() while this is set. */
  holdConfirms = false;
  readonly #unconfirmed: Array<() => void> = [];

  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
    confirmed?: (err: unknown) => void,
  ): boolean {
    this.#check();
    this.published.push({ exchange, routingKey, content, options });
    this.operations.push({ op: 'publish', routingKey });
    if (confirmed !== undefined) {
      if (this.holdConfirms) this.#unconfirmed.push(() => confirmed(null));
      else queueMicrotask(() => confirmed(null));
    }
    return !this.full;
  }

  /** Confirms the publishes held back by holdConfirms. */
  confirm(): void {
    for (const confirmed of this.#unconfirmed.splice(0)) confirmed();
  }

  ack(msg: Message): void {
    this.#check();
    this.operations.push({ op: 'ack', deliveryTag: msg.fields.deliveryTag });
  }

  nack(msg: Message, _allUpTo?: boolean, requeue = true): void {
    this.#check();
    this.operations.push({ op: 'nack', deliveryTag: msg.fields.deliveryTag, requeue });
  }

  async assertQueue(queue: string, options?: Options.AssertQueue) {
    this.declared.push({ queue, options });
    return { queue, messageCount: 0, consumerCount: 0 };
  }

  async checkQueue(queue: string) {
    return { queue, messageCount: 0, consumerCount: 0 };
  }

  async prefetch(count: number): Promise<void> {
    this.prefetchCount = count;
  }

  async consume(_queue: string, consumer: (msg: ConsumeMessage | null) => void) {
    this.#consumer = consumer;
    return { consumerTag: 'fake-consumer' };
  }

  async cancel(): Promise<void> {
    this.#consumer = undefined;
    this.operations.push({ op: 'cancel' });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.operations.push({ op: 'close' });
    this.emit('close');
  }

  get consuming(): boolean {
    return this.#consumer !== undefined;
  }

  /** Hands `msg` to the consumer, as the broker delivers a message. */
  deliver(msg: ConsumeMessage): void {
    if (this.#consumer === undefined) throw new Error('nobody consumes this channel');
    this.#consumer(msg);
  }

  drain(): void {
    this.full = false;
    this.emit('drain');
  }

  asChannel(): Channel {
    return this as unknown as Channel;
  }

  #check(): void {
    // amqplib's IllegalOperationError on a channel that has closed.
    if (this.broken || this.closed) throw new Error('Channel closed');
  }
}

/** A connection as far as BrokerConnection and the server see one: channels, events, close(). */
export class FakeConnection extends EventEmitter {
  readonly channels: FakeChannel[] = [];
  closed = false;

  async createChannel(): Promise<FakeChannel> {
    const channel = new FakeChannel();
    this.channels.push(channel);
    return channel;
  }

  async createConfirmChannel(): Promise<FakeChannel> {
    return this.createChannel();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** The channel that consumes (the server's work channel), once there is one. */
  get consumer(): FakeChannel | undefined {
    return this.channels.find((channel) => channel.consuming || channel.prefetchCount > 0);
  }
}

/** An opener (openConnection's shape) that hands out fake connections and keeps them. */
export function fakeOpener() {
  const connections: FakeConnection[] = [];
  const open = async (options: BrokerOptions): Promise<OpenedConnection> => {
    const connection = new FakeConnection();
    connections.push(connection);
    return { model: connection as unknown as ChannelModel, index: 0, url: options.url };
  };
  return { open, connections };
}

let nextDeliveryTag = 1;

/** A request as the broker delivers it from the work queue. */
export function delivery(
  body: string,
  properties: Partial<MessageProperties> = {},
  redelivered = false,
): ConsumeMessage {
  return {
    content: Buffer.from(body),
    fields: {
      deliveryTag: nextDeliveryTag++,
      redelivered,
      exchange: '',
      routingKey: 'work',
      consumerTag: 'fake-consumer',
    },
    properties: { headers: {}, ...properties } as MessageProperties,
  };
}

/** A reply as the broker delivers it on direct reply-to. */
export function replyMessage(correlationId: string | undefined, body: unknown): Message {
  return {
    content: Buffer.from(JSON.stringify(body)),
    fields: {} as Message['fields'],
    properties: { correlationId, headers: {} } as unknown as Message['properties'],
  };
}
