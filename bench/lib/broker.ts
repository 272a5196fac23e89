/**
 * What the benchmark does behind the variants' backs: deletes queues between runs, waits
 * for consumers, reads the broker's version, and (when the broker runs on this machine)
 * its CPU time from /proc, so the table can show how much of a core the broker used; for a
 * cluster, the sum over its nodes.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import amqp, { type ChannelModel } from 'amqplib';
import { AMQP_URL, firstUrl, sleep } from './common.ts';

export class Broker {
  #model: ChannelModel | undefined;
  readonly version: string;
  /** AMQP_URL for the variants on this broker: one URL, or a cluster's comma-separated list. */
  readonly urls: string;
  readonly #ports: number[];
  #beamPids: number[];
  readonly #ticksPerSecond: number;

  private constructor(model: ChannelModel, urls: string) {
    this.urls = urls;
    this.#adopt(model);
    const props = (model.connection as unknown as { serverProperties?: Record<string, unknown> }).serverProperties;
    this.version = `${props?.product ?? 'broker'} ${props?.version ?? '?'}`;
    this.#ports = urls.split(',').map((url) => Number(new URL(url.trim()).port || 5672));
    this.#beamPids = findBeams(this.#ports);
    this.#ticksPerSecond = clockTicks();
  }

  /** Connects (to the first of a list), waiting up to a minute for a broker that is (re)starting. */
  static async open(urls = AMQP_URL): Promise<Broker> {
    for (let attempt = 0; ; attempt++) {
      try {
        return new Broker(await amqp.connect(firstUrl(urls), { noDelay: true }), urls);
      } catch (err) {
        if (attempt >= 120) throw err;
        await sleep(500);
      }
    }
  }

  /** How many Erlang VMs the CPU column adds up (0: not measured). */
  get nodesMeasured(): number {
    return this.#beamPids.length;
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
        this.#adopt(await amqp.connect(firstUrl(this.urls), { noDelay: true }));
      } catch (err) {
        if (attempt >= 120) throw err;
        await sleep(500);
      }
    }
    const channel = await this.#model!.createChannel();
    channel.on('error', () => {});
    return channel;
  }

  /**
   * The CPU time so far (µs) of the broker's Erlang VMs, summed over a cluster's nodes, or
   * undefined when they are not local processes we can see (or one restarted: its VM is
   * looked up again for the next run, and this one's figure is lost).
   */
  cpuUs(): number | undefined {
    if (this.#beamPids.length === 0) return undefined;
    let ticks = 0;
    for (const pid of this.#beamPids) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        // utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
        ticks += Number(fields[11]) + Number(fields[12]);
      } catch {
        this.#beamPids = findBeams(this.#ports);
        return undefined;
      }
    }
    return (ticks / this.#ticksPerSecond) * 1e6;
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

/**
 * The Erlang VMs that listen on these AMQP ports. The machine may run several (a local
 * Kubernetes' broker, other people's test clusters): the first beam.smp in /proc is not
 * necessarily ours. Sockets of other users' processes are hidden from non-root; then a lone
 * beam.smp is taken as the broker, and with several none is (no CPU column).
 */
function findBeams(ports: number[]): number[] {
  const listening = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st ... inode: state 0A is LISTEN; the port is hex.
      const fields = line.trim().split(/\s+/);
      if (fields[3] !== '0A' || fields[9] === undefined) continue;
      if (ports.includes(Number.parseInt(fields[1]?.split(':')[1] ?? '', 16))) listening.add(`socket:[${fields[9]}]`);
    }
  }
  const beams: number[] = [];
  const found: number[] = [];
  for (const entry of safeReaddir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'beam.smp') continue;
    } catch {
      continue;
    }
    beams.push(Number(entry));
    if (safeReaddir(`/proc/${entry}/fd`).some((fd) => listening.has(safeReadlink(`/proc/${entry}/fd/${fd}`)))) {
      found.push(Number(entry));
    }
  }
  if (found.length > 0) return found;
  return beams.length === 1 ? beams : [];
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

function safeReadlink(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}
