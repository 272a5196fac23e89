import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { AMQP_URL } from './broker.ts';

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

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the built client CLI to completion. */
export function runClient(args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  return spawnClient(args, env).done;
}

/** Starts the built client CLI; `done` settles when it has exited and its output is read. */
export function spawnClient(
  args: string[],
  env: Record<string, string | undefined> = {},
): { child: ChildProcess; done: Promise<RunResult> } {
  const child = spawn(process.execPath, [CLIENT_BIN, ...args], {
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
  });
  const done = (once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>).then(([code, signal]) => ({
    code,
    signal,
    stdout,
    stderr,
  }));
  return { child, done };
}

/** A running fib-rpc-server process; `logs` collects its JSON log lines. */
export class ServerProcess {
  readonly child: ChildProcess;
  readonly logs: Array<Record<string, unknown>> = [];
  stderr = '';
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
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

  /** Starts a server and waits until it logs that it awaits requests. */
  static async start(env: Record<string, string | undefined>, timeoutMs = 15_000): Promise<ServerProcess> {
    const server = ServerProcess.spawn(env);
    await server.waitForLog((line) => line.msg === 'awaiting RPC requests', timeoutMs);
    return server;
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

  async waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs = 15_000,
  ): Promise<Record<string, unknown>> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const found = this.logs.find(match);
      if (found) return found;
      if (this.child.exitCode !== null) throw new Error(`server exited ${this.child.exitCode}: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`server did not log the expected line within ${timeoutMs} ms:\n${this.stderr}`);
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

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<[number | null, NodeJS.Signals | null]> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}
