/**
 * Child processes of the benchmark: servers (probed over IPC for CPU and memory) and the
 * client (driven over IPC). Every child gets a clean environment: no OTEL_* from outside.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { ClientMessage, ClientResult, CpuSample, ProbeReply, RunRequest } from './common.ts';
import { AMQP_URL, ROOT } from './common.ts';
import type { ProcessSpec } from './variants.ts';

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('OTEL_') && !key.startsWith('BENCH_')) env[key] = value;
  }
  return { ...env, AMQP_URL, ...extra };
}

/** Keeps the last few KB a child wrote on stderr, to explain a failure. */
function tail(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    text = (text + chunk.toString()).slice(-4000);
  });
  return () => text;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function terminate(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

export interface Probe {
  cpu: CpuSample;
  rss: number;
  heapUsed: number;
  external: number;
}

export class ServerProcess {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  #nextId = 0;
  readonly #waiting = new Map<number, (reply: ProbeReply) => void>();

  constructor(spec: ProcessSpec, env: Record<string, string>, flags: string[] = []) {
    this.child = spawn(process.execPath, [...flags, ...spec.execArgv, spec.script], {
      cwd: ROOT,
      env: cleanEnv({ ...spec.env, ...env }),
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.stderr = tail(this.child);
    this.child.on('message', (reply: ProbeReply) => {
      if (reply?.type !== 'probe') return;
      this.#waiting.get(reply.id)?.(reply);
      this.#waiting.delete(reply.id);
    });
    this.child.on('error', () => {});
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  probe(timeoutMs = 5000, gc = false): Promise<Probe> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`server ${this.child.pid} did not answer a probe:\n${this.stderr()}`));
      }, timeoutMs);
      this.#waiting.set(id, (reply) => {
        clearTimeout(timer);
        resolve({ cpu: reply.cpu, rss: reply.rss, heapUsed: reply.heapUsed, external: reply.external });
      });
      this.child.send({ type: 'probe', id, gc });
    });
  }

  /**
   * SIGTERM, and SIGKILL only after 15 s: a server drains, then flushes its spans within its
   * own bounds (fib-rpc: 3 s for the flush), and the sink counts what it flushed. A shorter
   * grace on a loaded machine would cut the flush and count as spans missing.
   */
  stop(): Promise<void> {
    return terminate(this.child, 15_000);
  }
}

export interface ClientHooks {
  onMeasuring?: () => void | Promise<void>;
  onMark?: (mark: { calls: number; rss: number; heapUsed: number; external: number }) => void | Promise<void>;
}

/** Runs one client process to completion and returns what it measured. */
export async function runClient(
  preload: string[],
  env: Record<string, string>,
  request: RunRequest,
  hooks: ClientHooks,
  timeoutMs: number,
  flags: string[] = [],
): Promise<ClientResult> {
  const args = [...flags, ...preload.flatMap((url) => ['--import', url]), 'bench/client.ts'];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: cleanEnv(env),
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const stderr = tail(child);
  child.on('error', () => {});
  const pendingHooks: Promise<void>[] = [];
  try {
    return await new Promise<ClientResult>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`client timed out after ${timeoutMs} ms:\n${stderr()}`)),
        timeoutMs,
      );
      const track = (hook: () => void | Promise<void>) => {
        const done = Promise.resolve().then(hook);
        done.catch(() => {}); // awaited with the result; a run that failed first does not care
        pendingHooks.push(done);
      };
      child.on('message', (message: ClientMessage) => {
        if (message.type === 'measuring' && hooks.onMeasuring) track(hooks.onMeasuring);
        else if (message.type === 'mark' && hooks.onMark) {
          const onMark = hooks.onMark;
          track(() => onMark(message));
        } else if (message.type === 'result') {
          clearTimeout(timer);
          Promise.all(pendingHooks).then(() => resolve(message.result), reject);
        } else if (message.type === 'failed') {
          clearTimeout(timer);
          reject(new Error(`client failed: ${message.error}\n${stderr()}`));
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`client exited (${code ?? signal}) before reporting:\n${stderr()}`));
      });
      child.send(request);
    });
  } finally {
    // It exits by itself once it has closed its connection (and written a --cpu-prof profile).
    await Promise.race([exited(child), new Promise((resolve) => setTimeout(resolve, 5000))]);
    await terminate(child, 3000);
  }
}
