import { AbortedError, type RpcClient, RpcError } from '@fib-rpc/rpc';
import { FibCache } from '../../fib/fib.ts';
import { fib } from '../../fib/methods.ts';
import { LatencyHistogram } from './histogram.ts';
import type { ReplyCounts } from './reply-counts.ts';

export interface LoadOptions {
  concurrency: number;
  /** Stop starting calls after this long (ms) ... */
  durationMs?: number;
  /** ... or after this many calls, whichever comes first. */
  count?: number;
  n: number;
  /** Vary n over 0..n so a reply delivered to the wrong call is caught by --verify. */
  spread: boolean;
  verify: boolean;
  timeoutMs: number;
  retries: number;
  /** Also retry calls that timed out (fib is idempotent). */
  retryOnTimeout?: boolean;
  /** The observer the client was connected with: the summary reports its stray replies. */
  replies?: ReplyCounts;
  onProgress?: (progress: LoadProgress) => void;
  progressEveryMs?: number;
  /** Stops the load early: no new calls, those in flight abandoned; the summary covers the rest. */
  signal?: AbortSignal;
}

export interface LoadProgress {
  calls: number;
  ok: number;
  errors: number;
  elapsedS: number;
  callsPerS: number;
  p50Ms: number;
}

/** The summary's key names are read by tooling and tests: keep them stable. */
export interface LoadSummary {
  calls: number;
  ok: number;
  errors: Record<string, number>;
  wrong: number;
  calls_per_s: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  mean_ms: number;
  duration_s: number;
  concurrency: number;
  retried_calls: number;
  duplicates_dropped: number;
  late_replies: number;
  unknown_replies: number;
  /** The broker the client was connected to at the end: scheme://host:port, no credentials. */
  broker: string;
  /** Periods of at least STALL_MS in which no call succeeded (e.g. while the broker restarted), first 20. */
  stalls: Stall[];
  /** The load was stopped early (SIGTERM, SIGINT). */
  interrupted: boolean;
  /** Calls in flight when it was stopped: left unanswered, counted in neither `calls` nor `errors`. */
  abandoned_calls: number;
}

export interface Stall {
  /** When the last success before the stall completed (ISO 8601), or when the load began. */
  start: string;
  /** When the first success after it completed. */
  end: string;
  duration_ms: number;
}

export const STALL_MS = 1000;
const MAX_STALLS = 20;
/**
 * How long a caller waits after a BROKER_BLOCKED before its next call. That failure comes at
 * once, without a round trip: a closed loop without a pause would spin through calls as fast
 * as the CPU allows for as long as the broker's alarm lasts, and count little but its own speed.
 */
export const BLOCKED_PAUSE_MS = 100;

const round = (value: number, digits = 3) => Number(value.toFixed(digits));

/** Waits `ms` (none when not positive), or less if `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (!(ms > 0) || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Runs `concurrency` callers in a closed loop and summarises what they saw. */
export async function runLoad(client: RpcClient, options: LoadOptions): Promise<LoadSummary> {
  const histogram = new LatencyHistogram();
  const errors: Record<string, number> = {};
  const expected = new FibCache();
  let started = 0;
  let ok = 0;
  let failed = 0;
  let wrong = 0;
  let retried = 0;
  let abandoned = 0;
  const signal = options.signal;
  const stalls: Stall[] = [];
  let lastOkAt = Date.now();
  const begin = performance.now();
  const stopAt = options.durationMs === undefined ? Number.POSITIVE_INFINITY : begin + options.durationMs;
  const limit = options.count ?? Number.POSITIVE_INFINITY;

  const progress = () => {
    const elapsedS = (performance.now() - begin) / 1000;
    options.onProgress?.({
      calls: ok + failed,
      ok,
      errors: failed,
      elapsedS,
      callsPerS: (ok + failed) / Math.max(elapsedS, 1e-9),
      p50Ms: histogram.quantile(0.5),
    });
  };
  const ticker = options.onProgress ? setInterval(progress, options.progressEveryMs ?? 500) : undefined;

  const worker = async () => {
    while (started < limit && performance.now() < stopAt && !signal?.aborted) {
      const index = started++;
      const n = options.spread ? index % (options.n + 1) : options.n;
      const t0 = performance.now();
      try {
        const { result, attempts } = await client.call(
          fib,
          { n },
          {
            timeoutMs: options.timeoutMs,
            retries: options.retries,
            retryOnTimeout: options.retryOnTimeout,
            signal,
          },
        );
        histogram.record(performance.now() - t0);
        const now = Date.now();
        if (now - lastOkAt >= STALL_MS && stalls.length < MAX_STALLS) {
          stalls.push({
            start: new Date(lastOkAt).toISOString(),
            end: new Date(now).toISOString(),
            duration_ms: now - lastOkAt,
          });
        }
        lastOkAt = Math.max(lastOkAt, now);
        if (attempts > 1) retried++;
        if (options.verify && result !== expected.get(n)) wrong++;
        else ok++;
      } catch (err) {
        if (signal?.aborted && err instanceof AbortedError) {
          abandoned++;
          continue;
        }
        failed++;
        const kind = err instanceof RpcError ? err.code : 'UNEXPECTED';
        errors[kind] = (errors[kind] ?? 0) + 1;
        if (kind === 'BROKER_BLOCKED') await pause(Math.min(BLOCKED_PAUSE_MS, stopAt - performance.now()), signal);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  if (ticker) clearInterval(ticker);
  const seconds = (performance.now() - begin) / 1000;
  const calls = ok + failed + wrong;
  return {
    calls,
    ok,
    errors,
    wrong,
    calls_per_s: round(calls / seconds, 1),
    p50_ms: round(histogram.quantile(0.5)),
    p90_ms: round(histogram.quantile(0.9)),
    p99_ms: round(histogram.quantile(0.99)),
    max_ms: round(histogram.max),
    mean_ms: round(histogram.mean),
    duration_s: round(seconds),
    concurrency: options.concurrency,
    retried_calls: retried,
    duplicates_dropped: options.replies?.duplicate ?? 0,
    late_replies: options.replies?.late ?? 0,
    unknown_replies: options.replies?.unknown ?? 0,
    broker: client.address,
    stalls,
    interrupted: signal?.aborted === true,
    abandoned_calls: abandoned,
  };
}
