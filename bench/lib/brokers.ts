/**
 * The brokers of one benchmark run: the machine's own (AMQP_URL) and the RabbitMQ 4 brokers
 * that variants on a cluster need, which the benchmark starts before its first run and
 * removes after its last (scripts/rabbitmq4.sh: root, Debian's rabbitmq-server 4.0.5 in a
 * chroot, loopback ports of its own, the machine's broker untouched).
 */
import { execFileSync } from 'node:child_process';
import { Broker } from './broker.ts';
import { ROOT } from './common.ts';
import type { BrokerId } from './variants.ts';

/** Node 1's AMQP port of each; node K listens on port + K - 1 (see scripts/rabbitmq4.sh for the rest). */
const STARTED: Record<Exclude<BrokerId, 'local'>, { nodes: number; port: number }> = {
  rabbitmq4x1: { nodes: 1, port: Number(process.env.BENCH_RABBITMQ4X1_PORT ?? 5781) },
  rabbitmq4x3: { nodes: 3, port: Number(process.env.BENCH_RABBITMQ4X3_PORT ?? 5791) },
};

const script = `${ROOT}scripts/rabbitmq4.sh`;
const envOf = (port: number) => ({ ...process.env, RABBITMQ4_CLUSTER_PORT: String(port) });

export class Brokers {
  readonly #open = new Map<BrokerId, Broker>();
  readonly #started: number[] = [];
  readonly #log: (line: string) => void;

  private constructor(log: (line: string) => void) {
    this.#log = log;
    // A cluster's nodes run in sessions of their own: Ctrl-C must not leave them behind.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        this.#stopClusters();
        process.exit(130);
      });
    }
  }

  static async open(ids: Iterable<BrokerId>, log: (line: string) => void): Promise<Brokers> {
    const brokers = new Brokers(log);
    try {
      brokers.#open.set('local', await Broker.open());
      for (const id of new Set(ids)) {
        if (id === 'local') continue;
        const { nodes, port } = STARTED[id];
        log(`bench: starting a RabbitMQ 4 cluster of ${nodes} node(s) on 127.0.0.1:${port} (scripts/rabbitmq4.sh)`);
        brokers.#started.push(port);
        const out = execFileSync('bash', [script, 'cluster-up', String(nodes)], {
          env: envOf(port),
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        const urls = out.trim().split('\n').at(-1) ?? '';
        brokers.#open.set(id, await Broker.open(urls));
      }
    } catch (err) {
      await brokers.close();
      throw err;
    }
    return brokers;
  }

  get(id: BrokerId): Broker {
    const broker = this.#open.get(id);
    if (broker === undefined) throw new Error(`broker ${id} was not started`);
    return broker;
  }

  /** `RabbitMQ 3.10.8`, then each started broker's version and size. */
  describe(): string {
    return [...this.#open.entries()]
      .map(([id, b]) => (id === 'local' ? b.version : `${b.version} x${STARTED[id].nodes} (${id})`))
      .join(', ');
  }

  async close(): Promise<void> {
    for (const broker of this.#open.values()) await broker.close();
    this.#open.clear();
    this.#stopClusters();
  }

  #stopClusters(): void {
    for (const port of this.#started.splice(0)) {
      try {
        execFileSync('bash', [script, 'cluster-down'], { env: envOf(port), stdio: ['ignore', 'ignore', 'inherit'] });
      } catch {
        this.#log(
          `bench: could not remove the cluster on port ${port}: RABBITMQ4_CLUSTER_PORT=${port} ${script} cluster-down`,
        );
      }
    }
  }
}
