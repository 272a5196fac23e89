import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { LoadSummary } from '../../src/cmd/fib-rpc-client/load.ts';
import { AMQP_URL } from './broker.ts';
import { JsonLines, type LogLine, logTime } from './logs.ts';
import { type Scoped, scoped } from './scoped.ts';
import { waitFor } from './wait.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
export const SERVER_BIN = `${root}bin/fib-rpc-server.js`;
export const CLIENT_BIN = `${root}bin/fib-rpc-client.js`;

/** Env for a child: the test broker, quiet telemetry unless the test sets it, plus `extra`. */
export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AMQP_URL,
    OTEL_SDK_DISABLED: 'true',
  };
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

export type Exit = [code: number | null, signal: NodeJS.Signals | null];

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** One of the built programs, started by a test: what it prints, its JSON log lines, its exit. */
abstract class Program implements AsyncDisposable {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  stdout = '';
  stderr = '';
  readonly #log = new JsonLines();
  readonly #name: string;

  protected constructor(name: string, child: ChildProcess, exitEvent: 'exit' | 'close') {
    this.#name = name;
    this.child = child;
    this.exited = once(child, exitEvent) as Promise<Exit>;
    child.stdout?.on('data', (chunk: Buffer) => {
      this.stdout += chunk;
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk;
      this.#log.push(chunk);
    });
  }

  get logs(): LogLine[] {
    return this.#log.lines;
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async waitForLog(match: (line: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const found = this.logs.find(match);
      if (found) return found;
      if (this.child.exitCode !== null) throw new Error(`${this.#name} exited ${this.child.exitCode}: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`${this.#name} did not log the expected line within ${timeoutMs} ms:\n${this.stderr}`);
  }

  /** When it first logs `msg` at or after `after` (ms since the epoch), waiting up to `timeoutMs` for it. */
  loggedAt(msg: string | RegExp, after: number, timeoutMs: number): Promise<number> {
    return waitFor(() => logTime(this.logs, msg, after), timeoutMs, `the ${this.#name} to log "${msg}"`);
  }

  abstract [Symbol.asyncDispose](): Promise<void>;
}

/** A running fib-rpc-server process; disposing it stops it with SIGTERM. */
export class ServerProcess extends Program {
  private constructor(child: ChildProcess) {
    super('server', child, 'exit');
  }

  /** Starts a server and waits until it logs that it awaits requests. */
  static async start(env: Record<string, string | undefined>, timeoutMs = 15_000): Promise<ServerProcess> {
    const server = ServerProcess.spawn(env);
    await server.waitForLog((line) => line.msg === 'awaiting RPC requests', timeoutMs);
    return server;
  }

  /** Starts `count` servers on the same env at once; the scope's end stops them all. */
  static async startMany(count: number, env: Record<string, string | undefined>): Promise<Scoped<ServerProcess[]>> {
    return stopAllAtEnd(await Promise.all(Array.from({ length: count }, () => ServerProcess.start(env))));
  }

  /** Starts a server without waiting for anything, e.g. for one whose broker is not there yet. */
  static spawn(env: Record<string, string | undefined>): ServerProcess {
    const child = spawn(process.execPath, [SERVER_BIN], {
      env: childEnv({ HTTP_PORT: '0', ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ServerProcess(child);
  }

  get httpPort(): number {
    const line = this.logs.find((l) => l.msg === 'health and metrics listening');
    return Number(line?.port);
  }

  async metric(name: string, labels = ''): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.httpPort}/metrics`)).text();
    let total = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith(name) && line.includes(labels) && !line.startsWith('#')) {
        const [series] = line.split(' ');
        if (series === name || series?.startsWith(`${name}{`)) total += Number(line.split(' ').pop());
      }
    }
    return total;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit> {
    if (this.running) {
      // A server a test froze (SIGSTOP) would not act on the signal until it runs again.
      this.child.kill('SIGCONT');
      this.child.kill(signal);
    }
    return this.exited;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** A fib-rpc-client run the test can watch (pid, logs) and kill; disposing it kills it if it still runs. */
export class ClientProcess extends Program {
  private constructor(child: ChildProcess) {
    // 'close', not 'exit': what it printed is read to the end before anyone looks at it.
    super('client', child, 'close');
  }

  static start(args: string[], env: Record<string, string | undefined> = {}): ClientProcess {
    return new ClientProcess(
      spawn(process.execPath, [CLIENT_BIN, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }),
    );
  }

  /** Its exit and everything it printed, once it has ended. */
  async result(): Promise<RunResult> {
    const [code, signal] = await this.exited;
    return { code, signal, stdout: this.stdout, stderr: this.stderr };
  }

  /** Waits for a --load --json run to finish and returns its summary and exit code. */
  async summary(): Promise<{ code: number | null; summary: LoadSummary }> {
    const [code] = await this.exited;
    const line = this.stdout.trim().split('\n').pop() ?? '';
    try {
      return { code, summary: JSON.parse(line) as LoadSummary };
    } catch {
      throw new Error(`the client printed no summary (exit ${code}):\n${this.stdout}\n${this.stderr.slice(-4000)}`);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Runs the built client CLI to completion. */
export function runClient(args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  return ClientProcess.start(args, env).result();
}

/** Stops servers with SIGTERM and returns their exit codes. */
export async function stopAll(servers: ServerProcess[]): Promise<Array<number | null>> {
  return Promise.all(servers.map(async (server) => (await server.stop('SIGTERM'))[0]));
}

/** `servers` (as they are when the scope ends), every one stopped with SIGTERM when it ends. */
export function stopAllAtEnd(servers: ServerProcess[]): Scoped<ServerProcess[]> {
  return scoped(servers, () => stopAll(servers));
}

/** Sum of a metric over servers still running (dead ones count 0). */
export async function metricSum(servers: ServerProcess[], name: string, labels = ''): Promise<number> {
  let total = 0;
  for (const server of servers) {
    if (!server.running) continue;
    total += await server.metric(name, labels).catch(() => 0);
  }
  return total;
}
