/**
 * Microbenchmark of the server's Fibonacci code (dist/fib/fib.js, what the handler runs):
 * the BigInt fast doubling, the decimal conversion, a cold FibCache.get (what a first
 * request for n costs) and a warm one (a repeated request). `node bench/fib.ts [--json]`.
 */
import { dist, LAYOUT } from './lib/common.ts';

export interface FibTiming {
  n: number;
  digits: number;
  reps: number;
  /** Medians and the worst, in ms. */
  computeMs: number;
  toStringMs: number;
  coldMs: number;
  coldMaxMs: number;
  warmMs: number;
  /** The issue's bound for this n, in ms. */
  limitMs: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
};

export async function benchFib(): Promise<FibTiming[]> {
  const { fib, FibCache } = await dist<typeof import('../src/fib/fib.ts')>(LAYOUT.fib);
  const cases = [
    { n: 100_000, reps: 30, limitMs: 20 },
    { n: 1_000_000, reps: 7, limitMs: 1000 },
  ];
  // Warm the JIT on small inputs first, as a running server would be.
  for (let i = 0; i < 200; i++) fib(5000 + i).toString();
  const timings: FibTiming[] = [];
  for (const { n, reps, limitMs } of cases) {
    const compute: number[] = [];
    const decimal: number[] = [];
    const cold: number[] = [];
    const warm: number[] = [];
    let digits = 0;
    for (let r = 0; r < reps; r++) {
      let t0 = performance.now();
      const value = fib(n);
      compute.push(performance.now() - t0);
      t0 = performance.now();
      digits = value.toString().length;
      decimal.push(performance.now() - t0);

      const cache = new FibCache();
      t0 = performance.now();
      cache.get(n);
      cold.push(performance.now() - t0);
      t0 = performance.now();
      cache.get(n);
      warm.push(performance.now() - t0);
    }
    timings.push({
      n,
      digits,
      reps,
      computeMs: median(compute),
      toStringMs: median(decimal),
      coldMs: median(cold),
      coldMaxMs: Math.max(...cold),
      warmMs: median(warm),
      limitMs,
    });
  }
  return timings;
}

export function formatFib(timings: FibTiming[]): string {
  const lines = [
    'fib microbenchmark (server code, one process; medians, ms)',
    '         n   digits   fast doubling   toString   cold get (max)        cached get   bound',
  ];
  for (const t of timings) {
    lines.push(
      `${String(t.n).padStart(10)} ${String(t.digits).padStart(8)} ${t.computeMs.toFixed(2).padStart(15)} ${t.toStringMs
        .toFixed(2)
        .padStart(10)} ${`${t.coldMs.toFixed(2)} (${t.coldMaxMs.toFixed(2)})`.padStart(16)} ${t.warmMs
        .toFixed(4)
        .padStart(17)}   ${t.coldMaxMs < t.limitMs ? 'ok' : 'OVER'} < ${t.limitMs}`,
    );
  }
  return lines.join('\n');
}

if (import.meta.main) {
  const timings = await benchFib();
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(timings)}\n`);
  else process.stdout.write(`${formatFib(timings)}\n`);
}
