import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BrokerAdmin } from '../support/broker.ts';
import { ClientProcess, type ServerProcess, stopAll } from '../support/processes.ts';

/**
 * What only the fault suite needs: its figures (the reporter's format) and the samplers that
 * measure them. Everything else the scenarios use lives in test/support, shared with the
 * integration and tracing suites.
 */

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

/** Resident set size of a live process, in bytes (Linux /proc); 0 once it has gone. */
export function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Samples the RSS of processes every `everyMs` and keeps each one's peak; disposing it stops it. */
export class RssSampler implements Disposable {
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

  [Symbol.dispose](): void {
    this.stop();
  }
}

/** Polls a queue's depth and keeps the largest seen; disposing it stops it. */
export class DepthSampler implements AsyncDisposable {
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

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/**
 * The cluster scenarios' load: 32 concurrent calls of fib(300) for `seconds`, spread, each
 * answer verified, retried up to 5 times with a 20 s timeout per attempt, summarised as JSON.
 * `retryOnTimeout` also retries attempts that timed out, as a caller of an idempotent method
 * like fib should where a request can be lost (scenario 11 on RabbitMQ 4.0).
 */
export function verifiedClusterLoad(
  seconds: number,
  env: Record<string, string>,
  { retryOnTimeout = false } = {},
): ClientProcess {
  return ClientProcess.start(
    [
      ...['--load', '--concurrency', '32', '--duration', `${seconds}s`, '--spread', '--verify', '--json'],
      ...['--retries', '5', '--timeout', '20000', ...(retryOnTimeout ? ['--retry-on-timeout'] : []), '300'],
    ],
    { ...env, LOG_LEVEL: 'debug' },
  );
}

/**
 * What a cluster scenario's load must show: the client exited 0 with every call answered and
 * none wrong, and every server ran throughout and stops cleanly.
 */
export async function assertEveryCallAnswered(
  load: ClientProcess,
  { code, summary }: Awaited<ReturnType<ClientProcess['summary']>>,
  servers: ServerProcess[],
): Promise<void> {
  assert.equal(code, 0, load.stderr.slice(-2000));
  assert.deepEqual(summary.errors, {});
  assert.equal(summary.ok, summary.calls);
  assert.equal(summary.wrong, 0);
  assert.ok(summary.calls > 0);
  for (const s of servers) assert.equal(s.child.exitCode, null, 'no server process exited');
  assert.deepEqual(
    await stopAll(servers),
    servers.map(() => 0),
  );
}
