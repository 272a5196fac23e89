import { randomBytes } from 'node:crypto';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import pino from 'pino';
import { type Scoped, scoped } from './scoped.ts';

/**
 * Which broker the suites run against: the machine's own (BROKER unset), or BROKER=rabbitmq4,
 * the RabbitMQ 4 node that scripts/rabbitmq4.sh runs on its own ports (a stand-in: Debian's
 * 4.0.5 package, not the official image). AMQP_URL, when set, still says where to connect.
 */
export const BROKER = brokerChoice(process.env.BROKER);
/** The rabbitmq4 node's AMQP port (scripts/rabbitmq4.sh reads the same variable). */
export const RABBITMQ4_PORT = Number(process.env.RABBITMQ4_PORT || 5682);

export const AMQP_URL =
  process.env.AMQP_URL ?? `amqp://guest:guest@127.0.0.1:${BROKER === 'rabbitmq4' ? RABBITMQ4_PORT : 5672}`;

/** Where AMQP_URL points: what a proxy in front of the broker forwards to. */
export const BROKER_HOST = new URL(AMQP_URL).hostname;
export const BROKER_PORT = Number(new URL(AMQP_URL).port || 5672);

/**
 * A message to a direct reply-to address whose pid is well formed but names no node of the
 * broker: RabbitMQ 3.x (3.10.8) closes the publishing connection with 541 INTERNAL_ERROR,
 * RabbitMQ 4 (4.0.5) confirms it and drops it. A pid that does not decode gets the 541 on both.
 */
export function closesOnUnknownReplyNode(version: string): boolean {
  return Number.parseInt(version, 10) < 4;
}

function brokerChoice(value: string | undefined): 'machine' | 'rabbitmq4' {
  if (value === undefined || value === '') return 'machine';
  if (value === 'rabbitmq4') return value;
  throw new Error(`BROKER=${value}: set BROKER=rabbitmq4 (scripts/rabbitmq4.sh), or unset it for the machine's broker`);
}

/** A quiet logger for in-process servers and clients. */
export const silentLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** A queue name no other test (or parallel run) uses. */
export function uniqueQueue(label: string): string {
  return `test.${label}.${randomBytes(4).toString('hex')}`;
}

/**
 * A raw amqplib connection for what tests do behind the project's back. Closing (or disposing)
 * it deletes the queues it tracks.
 */
export class BrokerAdmin implements AsyncDisposable {
  readonly model: ChannelModel;
  readonly channel: Channel;
  readonly #queues = new Set<string>();

  private constructor(model: ChannelModel, channel: Channel) {
    this.model = model;
    this.channel = channel;
  }

  /** On the broker under test, or on `url` (a suite's own node, say). */
  static async open(url = AMQP_URL): Promise<BrokerAdmin> {
    const model = await amqp.connect(url, { noDelay: true });
    const channel = await model.createChannel();
    return new BrokerAdmin(model, channel);
  }

  /** The broker's version, as it announced it when the admin connected (e.g. "4.0.5"). */
  get version(): string {
    const { serverProperties } = this.model.connection as unknown as { serverProperties?: Record<string, unknown> };
    return String(serverProperties?.version ?? 'unknown');
  }

  /** A channel of its own, closed when its `await using` scope ends. */
  async openChannel(): Promise<Scoped<Channel>> {
    const channel = await this.model.createChannel();
    return scoped(channel, () => channel.close().catch(() => {}));
  }

  /** Deletes the queue (and its .dlq) when the admin closes. */
  track(queue: string): string {
    this.#queues.add(queue);
    this.#queues.add(`${queue}.dlq`);
    return queue;
  }

  async messageCount(queue: string): Promise<number> {
    await using channel = await this.openChannel();
    return (await channel.checkQueue(queue)).messageCount;
  }

  async waitForCount(queue: string, count: number, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last = -1;
    while (Date.now() < until) {
      last = await this.messageCount(queue);
      if (last === count) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`queue ${queue} has ${last} messages, expected ${count}`);
  }

  async close(): Promise<void> {
    const channel = await this.model.createChannel();
    channel.on('error', () => {});
    for (const queue of this.#queues) await channel.deleteQueue(queue).catch(() => {});
    await this.model.close().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
