import { randomBytes } from 'node:crypto';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import pino from 'pino';
import { type Scoped, scoped } from './scoped.ts';

/**
 * Which broker the suites run against: the machine's own (BROKER unset), or a RabbitMQ 4 node
 * that scripts/rabbitmq4.sh runs on its own ports, a stand-in made of a Debian package, not the
 * official image: BROKER=rabbitmq4 for Debian 13's 4.0.5 (Mnesia), BROKER=rabbitmq43 for Debian
 * forky's 4.3 (Khepri, 4.x's deprecated features denied). AMQP_URL, when set, still says where
 * to connect.
 */
export const BROKER = brokerChoice(process.env.BROKER);
/** True when BROKER is one of scripts/rabbitmq4.sh's nodes. */
export const STAND_IN = BROKER !== 'machine';
/** scripts/rabbitmq4.sh's RABBITMQ4_SERIES for BROKER (4.0 for the machine's, for its clusters). */
export const RABBITMQ4_SERIES = BROKER === 'rabbitmq43' ? '4.3' : '4.0';
/** The stand-in node's AMQP port (scripts/rabbitmq4.sh reads the same variable and defaults). */
export const RABBITMQ4_PORT = Number(process.env.RABBITMQ4_PORT || (BROKER === 'rabbitmq43' ? 5685 : 5682));

/** The environment scripts/rabbitmq4.sh runs in: the series and port of BROKER, then `extra`. */
export function rabbitmq4Env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, RABBITMQ4_SERIES, RABBITMQ4_PORT: String(RABBITMQ4_PORT), ...extra };
}

export const AMQP_URL = process.env.AMQP_URL ?? `amqp://guest:guest@127.0.0.1:${STAND_IN ? RABBITMQ4_PORT : 5672}`;

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

function brokerChoice(value: string | undefined): 'machine' | 'rabbitmq4' | 'rabbitmq43' {
  if (value === undefined || value === '') return 'machine';
  if (value === 'rabbitmq4' || value === 'rabbitmq43') return value;
  throw new Error(
    `BROKER=${value}: set BROKER=rabbitmq4 or BROKER=rabbitmq43 (scripts/rabbitmq4.sh), or unset it for the machine's broker`,
  );
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
