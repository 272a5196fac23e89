import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BrokerAdmin, RABBITMQ4_SERIES, rabbitmq4Env } from './broker.ts';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/rabbitmq4.sh', import.meta.url));

/** Why this machine cannot run scripts/rabbitmq4.sh clusters, or null when it can. */
export function cannotRunRabbitmq4(): string | null {
  if (process.platform !== 'linux') return 'RabbitMQ 4 nodes run in a chroot (Linux only)';
  if (process.getuid?.() !== 0) return 'RabbitMQ 4 nodes need root (chroot, mount namespace)';
  return null;
}

/**
 * A RabbitMQ 4 cluster of scripts/rabbitmq4.sh (a stand-in: a Debian package in a chroot, not
 * the official image; Debian 13's 4.0.5, or forky's 4.3 with BROKER=rabbitmq43) on loopback
 * ports from `port` up, with nodes numbered 1..n in the order of `urls`.
 */
export class Rabbitmq4Cluster {
  readonly urls: string[];
  readonly #env: NodeJS.ProcessEnv;

  private constructor(urls: string[], env: NodeJS.ProcessEnv) {
    this.urls = urls;
    this.#env = env;
  }

  /** Starts n fresh nodes joined into one cluster (builds the root filesystem once). */
  static async up(n: number, port: number): Promise<Rabbitmq4Cluster> {
    const env = rabbitmq4Env({ RABBITMQ4_CLUSTER_PORT: String(port) });
    const stdout = await script(env, 'cluster-up', String(n));
    const urls = stdout.trim().split(',');
    if (urls.length !== n) throw new Error(`cluster-up ${n} printed ${urls.length} URLs: ${stdout}`);
    return new Rabbitmq4Cluster(urls, env);
  }

  /** The stand-in's series (scripts/rabbitmq4.sh's RABBITMQ4_SERIES). */
  readonly series = RABBITMQ4_SERIES;

  /** The RabbitMQ version node 1 announces (e.g. "4.3.6"). */
  async version(): Promise<string> {
    const admin = await BrokerAdmin.open(this.urls[0]);
    await admin.close();
    return admin.version;
  }

  /** The number (1..n) of the node that leads quorum queue `queue`, as the first of `ask` answers. */
  async leader(queue: string, ask: number[] = []): Promise<number> {
    return Number((await script(this.#env, 'leader', queue, ...ask.map(String))).trim());
  }

  /** The numbers of the nodes whose members of quorum queue `queue` are online, as the first of `ask` answers. */
  async online(queue: string, ask: number[] = []): Promise<number[]> {
    const out = (await script(this.#env, 'online', queue, ...ask.map(String))).trim();
    return out === '' ? [] : out.split(' ').map(Number);
  }

  /** Cuts node k's Erlang distribution off from the other nodes (AMQP still reaches it). */
  async partition(k: number): Promise<void> {
    await script(this.#env, 'partition', String(k));
  }

  /** Removes the cut of partition(k); nothing when there is none. */
  async heal(k: number): Promise<void> {
    await script(this.#env, 'heal', String(k));
  }

  /** SIGKILL of node k's Erlang VM. */
  async kill(k: number): Promise<void> {
    await script(this.#env, 'kill', String(k));
  }

  /** Restarts node k; resolves once it runs (and has rejoined). */
  async start(k: number): Promise<void> {
    await script(this.#env, 'start', String(k));
  }

  /** Stops every node; nothing of the cluster is left behind. */
  async down(): Promise<void> {
    await script(this.#env, 'cluster-down');
  }
}

async function script(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('bash', [SCRIPT, ...args], { env, timeout: 600_000 });
    return stdout;
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`scripts/rabbitmq4.sh ${args.join(' ')} failed: ${stderr?.trim() || (err as Error).message}`);
  }
}
