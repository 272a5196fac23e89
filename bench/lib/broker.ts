/**
 * What the benchmark does behind the variants' backs: deletes queues between runs, waits
 * for consumers, reads the broker's version, and (when the broker runs on this machine)
 * its CPU time from /proc, so the table can show how much of a core the broker used.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import amqp, { type ChannelModel } from 'amqplib';
import { AMQP_URL, sleep } from './common.ts';

export class Broker {
  #model: ChannelModel | undefined;
  readonly version: string;
  readonly #beamPid: number | undefined;
  readonly #ticksPerSecond: number;

  private constructor(model: ChannelModel) {
    this.#adopt(model);
    const props = (model.connection as unknown as { serverProperties?: Record<string, unknown> }).serverProperties;
    this.version = `${props?.product ?? 'broker'} ${props?.version ?? '?'}`;
    this.#beamPid = findBeam();
    this.#ticksPerSecond = clockTicks();
  }

  /** Connects, waiting up to a minute for a broker that is (re)starting. */
  static async open(): Promise<Broker> {
    for (let attempt = 0; ; attempt++) {
      try {
        return new Broker(await amqp.connect(AMQP_URL, { noDelay: true }));
      } catch (err) {
        if (attempt >= 120) throw err;
        await sleep(500);
      }
    }
  }

  /** How many times our connection was closed under us: a broker restart spoils a run. */
  lost = 0;

  #adopt(model: ChannelModel): void {
    this.#model = model;
    model.on('error', () => {});
    model.once('close', () => {
      if (this.#model !== model) return;
      this.#model = undefined;
      this.lost++;
    });
  }

  /** A channel, reconnecting first if the broker went away (e.g. restarted by someone else). */
  async #channel() {
    for (let attempt = 0; this.#model === undefined; attempt++) {
      try {
        this.#adopt(await amqp.connect(AMQP_URL, { noDelay: true }));
      } catch (err) {
        if (attempt >= 120) throw err;
        await sleep(500);
      }
    }
    const channel = await this.#model!.createChannel();
    channel.on('error', () => {});
    return channel;
  }

  /** The broker's CPU time so far (µs), or undefined when it is not a local process. */
  cpuUs(): number | undefined {
    if (this.#beamPid === undefined) return undefined;
    try {
      const stat = readFileSync(`/proc/${this.#beamPid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
      const ticks = Number(fields[11]) + Number(fields[12]);
      return (ticks / this.#ticksPerSecond) * 1e6;
    } catch {
      return undefined;
    }
  }

  async deleteQueues(...queues: string[]): Promise<void> {
    for (const queue of queues) {
      const channel = await this.#channel();
      try {
        await channel.deleteQueue(queue);
        await channel.close();
      } catch {
        // the channel is closed by the error
      }
    }
  }

  async consumers(queue: string): Promise<number> {
    const channel = await this.#channel();
    try {
      const { consumerCount } = await channel.checkQueue(queue);
      await channel.close();
      return consumerCount;
    } catch {
      return 0; // no queue yet
    }
  }

  async waitForConsumers(queue: string, count: number, timeoutMs: number, alive: () => boolean): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if ((await this.consumers(queue)) >= count) return;
      if (!alive()) throw new Error('a server exited during start-up');
      await sleep(50);
    }
    throw new Error(`queue ${queue} did not get ${count} consumer(s) within ${timeoutMs} ms`);
  }

  async close(): Promise<void> {
    const model = this.#model;
    this.#model = undefined;
    await model?.close().catch(() => {});
  }
}

function findBeam(): number | undefined {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'beam.smp') return Number(entry);
      } catch {}
    }
  } catch {}
  return undefined;
}

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}
