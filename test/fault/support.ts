import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { LoadSummary } from '../../src/cmd/fib-rpc-client/load.ts';
import { BROKER, BROKER_HOST, BROKER_PORT, type BrokerAdmin, RABBITMQ4_PORT } from '../support/broker.ts';
import { CLIENT_BIN, childEnv, type ServerProcess } from '../support/processes.ts';

const run = promisify(execFile);

/** One measured figure; the fault reporter (test/fault/reporter.ts) tabulates them. */
export interface Figure {
  scenario: string;
  name: string;
  value: number | string;
}

export const FIGURE_PREFIX = 'figure ';

export function figure(t: TestContext, scenario: string, name: string, value: number | string): void {
  t.diagnostic(`${FIGURE_PREFIX}${JSON.stringify({ scenario, name, value } satisfies Figure)}`);
}

/** Whole milliseconds, or whole MB: what the table shows. */
export const ms = (value: number) => Math.round(value);
export const mb = (bytes: number) => Math.round(bytes / (1024 * 1024));

/** A client CLI run that the test can watch (pid, logs) and kill, unlike runClient. */
export class ClientProcess {
  readonly child: ChildProcess;
  readonly logs: Array<Record<string, unknown>> = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.exited = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
    child.stdout?.on('data', (chunk: Buffer) => {
      this.stdout += chunk;
    });
    let partial = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk;
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        try {
          this.logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not a log line
        }
      }
    });
  }

  static start(args: string[], env: Record<string, string | undefined> = {}): ClientProcess {
    return new ClientProcess(
      spawn(process.execPath, [CLIENT_BIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }),
    );
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Waits for the load to finish and returns its JSON summary and exit code. */
  async summary(): Promise<{ code: number | null; summary: LoadSummary }> {
    const [code] = await this.exited;
    const line = this.stdout.trim().split('\n').pop() ?? '';
    try {
      return { code, summary: JSON.parse(line) as LoadSummary };
    } catch {
      throw new Error(`the client printed no summary (exit ${code}):\n${this.stdout}\n${this.stderr.slice(-4000)}`);
    }
  }
}

/** Resident set size of a live process, in bytes (Linux /proc); 0 once it has gone. */
export function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Samples the RSS of processes every `everyMs` and keeps each one's peak. */
export class RssSampler {
  readonly #pids = new Map<string, number>();
  readonly peaks = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(everyMs = 100) {
    this.#timer = setInterval(() => this.sample(), everyMs);
  }

  watch(label: string, pid: number): void {
    this.#pids.set(label, pid);
  }

  sample(): void {
    for (const [label, pid] of this.#pids) {
      const rss = rssBytes(pid);
      if (rss > (this.peaks.get(label) ?? 0)) this.peaks.set(label, rss);
    }
  }

  peak(prefix = ''): number {
    let max = 0;
    for (const [label, value] of this.peaks) if (label.startsWith(prefix) && value > max) max = value;
    return max;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.sample();
  }
}

/** Polls a queue's depth and keeps the largest seen. */
export class DepthSampler {
  max = 0;
  last = 0;
  readonly #stop: AbortController = new AbortController();
  readonly #done: Promise<void>;

  constructor(admin: BrokerAdmin, queue: string, everyMs = 200) {
    this.#done = (async () => {
      while (!this.#stop.signal.aborted) {
        try {
          this.last = await admin.messageCount(queue);
          this.max = Math.max(this.max, this.last);
        } catch {
          // the broker may be restarting
        }
        await sleep(everyMs).catch(() => {});
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#done;
  }
}

/** The time (ms since the epoch) of the first log line after `after` that matches. */
export function logTime(logs: Array<Record<string, unknown>>, msg: string | RegExp, after = 0): number | undefined {
  for (const line of logs) {
    const at = typeof line.time === 'number' ? line.time : Date.parse(String(line.time));
    if (at >= after && (typeof msg === 'string' ? line.msg === msg : msg.test(String(line.msg)))) return at;
  }
  return undefined;
}

export async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Stops servers with SIGTERM and returns their exit codes. */
export async function stopAll(servers: ServerProcess[]): Promise<Array<number | null>> {
  return Promise.all(servers.map(async (server) => (await server.stop('SIGTERM'))[0]));
}

/** Sum of a metric over servers still running (dead ones count 0). */
export async function metricSum(servers: ServerProcess[], name: string, labels = ''): Promise<number> {
  let total = 0;
  for (const server of servers) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) continue;
    total += await server.metric(name, labels).catch(() => 0);
  }
  return total;
}

// ---- the local broker ---------------------------------------------------------------

export { BROKER_HOST, BROKER_PORT };

/** True when the broker answers TCP on its AMQP port. */
export function brokerListening(port = BROKER_PORT, host = BROKER_HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** The broker's TLS listener: ensure-broker.sh's on the machine's broker, AMQP port - 1 on rabbitmq4's. */
export const BROKER_TLS_PORT = BROKER === 'rabbitmq4' ? RABBITMQ4_PORT - 1 : 5671;

const RABBITMQ4_SCRIPT = fileURLToPath(new URL('../../scripts/rabbitmq4.sh', import.meta.url));

/** rabbitmqctl against the broker under test: with BROKER=rabbitmq4, that node's own. */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const [command, argv]: [string, string[]] =
    BROKER === 'rabbitmq4' ? ['bash', [RABBITMQ4_SCRIPT, 'ctl', ...args]] : ['rabbitmqctl', args];
  const { stdout } = await run(command, argv, { timeout: 60_000 });
  return stdout;
}

/** Why this machine cannot stop and start the broker, or null when it can. */
export async function cannotControlBroker(): Promise<string | null> {
  if (!['127.0.0.1', 'localhost', '::1'].includes(BROKER_HOST)) return `AMQP_URL points at ${BROKER_HOST}`;
  try {
    await rabbitmqctl('status');
    return null;
  } catch (err) {
    return `rabbitmqctl does not work here: ${(err as Error).message.split('\n')[0]}`;
  }
}

/** Starts the RabbitMQ application if it is stopped; waits until AMQP answers. */
export async function ensureBrokerRunning(): Promise<void> {
  if (await brokerListening()) return;
  await rabbitmqctl('start_app').catch(() => {});
  await waitFor(async () => ((await brokerListening()) ? true : undefined), 120_000, 'the broker to come back');
}

export async function brokerVersion(admin: BrokerAdmin): Promise<string> {
  const properties = (admin.model.connection as unknown as { serverProperties?: Record<string, unknown> })
    .serverProperties;
  return String(properties?.version ?? 'unknown');
}
