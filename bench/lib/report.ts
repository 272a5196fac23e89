/**
 * Turns the runs into the table, the ratios and the issue's targets. Ratios are paired:
 * variant / reference within the same round (adjacent in time), then the median over
 * rounds, so that drift in the machine's load cancels out.
 */
import type { FibTiming } from '../fib.ts';
import type { ClientResult } from './common.ts';
import type { Variant } from './variants.ts';

export interface Cell {
  variant: string;
  config: string;
  round: number;
  result?: ClientResult;
  serverCpuUs?: number;
  serverRss?: number[];
  brokerCpuUs?: number | undefined;
  sinkBytes?: number;
  /** Traced variants: what the sink counted for this run's calls. */
  spans?: SpanCheck;
  error?: string;
}

export interface SpanCheck {
  /** Calls begun (warm-up included), traces and spans that reached the sink. */
  calls: number;
  traces: number;
  spans: number;
  perService: Record<string, number>;
  /** What is missing, if anything. */
  missing?: string | undefined;
}

export interface Aggregate {
  variant: string;
  title: string;
  config: string;
  rounds: number;
  calls_per_s: number;
  ratio_to_floor: number | null;
  p50_ms: number;
  p50_ratio_to_floor: number | null;
  p99_ms: number;
  max_ms: number;
  client_cpu_s_per_10k: number;
  server_cpu_s_per_10k: number;
  broker_cpu_s_per_10k: number | null;
  errors: number;
  wrong: number;
  exported_bytes_per_call: number;
  failed_runs: number;
}

const median = (values: number[]) => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const rate = (r: ClientResult) => r.calls / r.seconds;
const ok = (c: Cell): c is Cell & { result: ClientResult } => c.result !== undefined;

/** Median over rounds of metric(a) / metric(b), a and b measured in the same round. */
export function pairedRatio(
  cells: Cell[],
  a: string,
  b: string,
  config: string,
  metric: (r: ClientResult) => number = rate,
): number | null {
  const ratios: number[] = [];
  for (const cell of cells) {
    if (cell.variant !== a || cell.config !== config || !ok(cell)) continue;
    const other = cells.find((c) => c.variant === b && c.config === config && c.round === cell.round);
    if (other === undefined || !ok(other)) continue;
    const denominator = metric(other.result);
    if (denominator > 0) ratios.push(metric(cell.result) / denominator);
  }
  return ratios.length === 0 ? null : median(ratios);
}

export function aggregate(cells: Cell[], variants: Variant[], configs: { label: string }[]): Aggregate[] {
  const rows: Aggregate[] = [];
  for (const config of configs) {
    for (const variant of variants) {
      const mine = cells.filter((c) => c.variant === variant.id && c.config === config.label);
      const good = mine.filter(ok);
      if (good.length === 0) continue;
      const calls = good.reduce((n, c) => n + c.result.calls, 0);
      const per10k = (us: number) => (us / 1e6 / Math.max(calls, 1)) * 10_000;
      const brokerCells = good.filter((c) => c.brokerCpuUs !== undefined);
      const brokerCalls = brokerCells.reduce((n, c) => n + c.result.calls, 0);
      const hasFloor = variants.some((v) => v.id === variant.floor);
      rows.push({
        variant: variant.id,
        title: variant.title,
        config: config.label,
        rounds: good.length,
        calls_per_s: median(good.map((c) => rate(c.result))),
        ratio_to_floor: hasFloor ? pairedRatio(cells, variant.id, variant.floor, config.label) : null,
        p50_ms: median(good.map((c) => c.result.p50Ms)),
        p50_ratio_to_floor: hasFloor
          ? pairedRatio(cells, variant.id, variant.floor, config.label, (r) => r.p50Ms)
          : null,
        p99_ms: median(good.map((c) => c.result.p99Ms)),
        max_ms: Math.max(...good.map((c) => c.result.maxMs)),
        client_cpu_s_per_10k: per10k(good.reduce((t, c) => t + c.result.cpu.userUs + c.result.cpu.systemUs, 0)),
        server_cpu_s_per_10k: per10k(good.reduce((t, c) => t + (c.serverCpuUs ?? 0), 0)),
        broker_cpu_s_per_10k:
          brokerCells.length === 0
            ? null
            : (brokerCells.reduce((t, c) => t + (c.brokerCpuUs ?? 0), 0) / 1e6 / Math.max(brokerCalls, 1)) * 10_000,
        errors: good.reduce((n, c) => n + c.result.errors, 0),
        wrong: good.reduce((n, c) => n + c.result.wrong, 0),
        exported_bytes_per_call: good.reduce((n, c) => n + (c.sinkBytes ?? 0), 0) / Math.max(calls, 1),
        failed_runs: mine.length - good.length,
      });
    }
  }
  return rows;
}

const fixed = (value: number | null, digits: number) =>
  value === null || Number.isNaN(value) ? '-' : value.toFixed(digits);

export function formatTable(rows: Aggregate[], configs: { label: string; concurrency: number; servers: number }[]) {
  const header = [
    'variant'.padEnd(34),
    'calls/s'.padStart(8),
    'x floor'.padStart(8),
    'p50 ms'.padStart(8),
    'p99 ms'.padStart(8),
    'max ms'.padStart(8),
    'client'.padStart(7),
    'server'.padStart(7),
    'broker'.padStart(7),
    '  errors',
  ].join(' ');
  const lines: string[] = ['CPU columns: CPU seconds per 10k calls (user + system); x floor: paired per round, median'];
  for (const config of configs) {
    const mine = rows.filter((r) => r.config === config.label);
    if (mine.length === 0) continue;
    lines.push(
      '',
      `concurrency ${config.concurrency}, ${config.servers} server process${config.servers > 1 ? 'es' : ''}`,
      header,
    );
    for (const r of mine) {
      lines.push(
        [
          r.title.padEnd(34),
          r.calls_per_s.toFixed(0).padStart(8),
          fixed(r.ratio_to_floor, 2).padStart(8),
          r.p50_ms.toFixed(3).padStart(8),
          r.p99_ms.toFixed(2).padStart(8),
          r.max_ms.toFixed(1).padStart(8),
          r.client_cpu_s_per_10k.toFixed(2).padStart(7),
          r.server_cpu_s_per_10k.toFixed(2).padStart(7),
          fixed(r.broker_cpu_s_per_10k, 2).padStart(7),
          `  ${r.errors}${r.wrong ? ` (${r.wrong} wrong)` : ''}${r.failed_runs ? ` [${r.failed_runs} runs failed]` : ''}`,
        ].join(' '),
      );
    }
  }
  return lines.join('\n');
}

/** What tracing costs per call: one row per traced variant and concurrency. */
export interface TracingCostRow {
  variant: string;
  title: string;
  config: string;
  /** CPU µs per call, client and server, and what tracing added to its untraced twin. */
  client_us: number;
  server_us: number;
  client_added_us: number | null;
  server_added_us: number | null;
  spans_per_call: number;
  bytes_per_call: number;
  bytes_per_span: number;
  calls_checked: number;
  complete: boolean;
  /** The sampler's ratio, when the variant samples. */
  sampled?: number | undefined;
}

export function tracingCostRows(
  cells: Cell[],
  rows: Aggregate[],
  variants: Variant[],
  configs: { label: string }[],
): TracingCostRow[] {
  const out: TracingCostRow[] = [];
  for (const config of configs) {
    for (const variant of variants) {
      if (variant.spans === undefined) continue;
      const row = rows.find((r) => r.variant === variant.id && r.config === config.label);
      if (row === undefined) continue;
      const untraced = rows.find((r) => r.variant === variant.spans?.untraced && r.config === config.label);
      const checks = cells
        .filter((c) => c.variant === variant.id && c.config === config.label && c.spans !== undefined)
        .map((c) => c.spans as SpanCheck);
      const spans = checks.reduce((n, c) => n + c.spans, 0);
      const calls = checks.reduce((n, c) => n + c.calls, 0);
      const perCall = spans / Math.max(calls, 1);
      out.push({
        variant: variant.id,
        title: variant.title,
        config: config.label,
        client_us: row.client_cpu_s_per_10k * 100,
        server_us: row.server_cpu_s_per_10k * 100,
        client_added_us: untraced ? (row.client_cpu_s_per_10k - untraced.client_cpu_s_per_10k) * 100 : null,
        server_added_us: untraced ? (row.server_cpu_s_per_10k - untraced.server_cpu_s_per_10k) * 100 : null,
        spans_per_call: perCall,
        bytes_per_call: row.exported_bytes_per_call,
        bytes_per_span: row.exported_bytes_per_call / Math.max(perCall, 1e-9),
        calls_checked: calls,
        sampled: variant.spans.sampled,
        complete: checks.length > 0 && checks.every((c) => c.missing === undefined),
      });
    }
  }
  return out;
}

export function formatTracingCost(rows: TracingCostRow[]): string {
  const lines = [
    'tracing cost per call: CPU µs per call (+ what tracing added to the same variant untraced), spans and OTLP bytes exported per call; spans: every call counted at the sink',
    [
      'c'.padStart(5),
      'variant'.padEnd(34),
      'client µs'.padStart(16),
      'server µs'.padStart(16),
      'spans'.padStart(6),
      'bytes'.padStart(7),
      'B/span'.padStart(7),
      '  spans of every call',
    ].join(' '),
  ];
  const us = (v: number, added: number | null) => `${v.toFixed(0)}${added === null ? '' : ` (+${added.toFixed(0)})`}`;
  for (const r of rows) {
    lines.push(
      [
        r.config.padStart(5),
        r.title.padEnd(34),
        us(r.client_us, r.client_added_us).padStart(16),
        us(r.server_us, r.server_added_us).padStart(16),
        r.spans_per_call.toFixed(2).padStart(6),
        r.bytes_per_call.toFixed(0).padStart(7),
        r.bytes_per_span.toFixed(0).padStart(7),
        `  ${r.complete ? `${r.sampled === undefined ? 'all there' : 'every kept trace whole'} (${r.calls_checked} calls)` : 'MISSING (see the log)'}`,
      ].join(' '),
    );
  }
  return lines.join('\n');
}

/** One row of the queue-type table: every ratio is to the floor on a classic queue. */
export interface QueueTypeRow {
  variant: string;
  title: string;
  config: string;
  calls_per_s: number;
  ratio_to_classic_floor: number | null;
  p50_ms: number;
  p50_ratio_to_classic_floor: number | null;
  p99_ms: number;
  broker_cpu_s_per_10k: number | null;
}

/**
 * What decides the request queue's type: each queue type and topology against the one
 * reference, the raw amqplib floor on a classic queue of the machine's broker, paired per
 * round. Empty unless the run has that floor and something on another queue type.
 */
export function queueTypeRows(
  cells: Cell[],
  rows: Aggregate[],
  variants: Variant[],
  configs: { label: string }[],
): QueueTypeRow[] {
  const classicFloor = variants.find((v) => v.id === 'floor');
  if (classicFloor === undefined || !variants.some((v) => v.queueType !== 'classic' || v.broker !== 'local')) return [];
  const wanted = variants.filter((v) => !v.tracing && (v.client.kind === 'floor' || v.client.kind === 'fib-rpc'));
  const out: QueueTypeRow[] = [];
  for (const config of configs) {
    for (const variant of wanted) {
      const row = rows.find((r) => r.variant === variant.id && r.config === config.label);
      if (row === undefined) continue;
      out.push({
        variant: variant.id,
        title: variant.title,
        config: config.label,
        calls_per_s: row.calls_per_s,
        ratio_to_classic_floor: pairedRatio(cells, variant.id, 'floor', config.label),
        p50_ms: row.p50_ms,
        p50_ratio_to_classic_floor: pairedRatio(cells, variant.id, 'floor', config.label, (r) => r.p50Ms),
        p99_ms: row.p99_ms,
        broker_cpu_s_per_10k: row.broker_cpu_s_per_10k,
      });
    }
  }
  return out;
}

export function formatQueueTypes(rows: QueueTypeRow[]): string {
  const lines = [
    'queue types: every ratio to the floor on a classic queue (paired per round, median); broker: CPU s per 10k calls, a cluster summed over its nodes',
    [
      'c'.padStart(4),
      'variant'.padEnd(34),
      'calls/s'.padStart(8),
      'x floor'.padStart(8),
      'p50 ms'.padStart(8),
      'p50 x fl'.padStart(8),
      'p99 ms'.padStart(8),
      'broker'.padStart(7),
    ].join(' '),
  ];
  for (const r of rows) {
    lines.push(
      [
        r.config.padStart(4),
        r.title.padEnd(34),
        r.calls_per_s.toFixed(0).padStart(8),
        fixed(r.ratio_to_classic_floor, 2).padStart(8),
        r.p50_ms.toFixed(3).padStart(8),
        fixed(r.p50_ratio_to_classic_floor, 2).padStart(8),
        r.p99_ms.toFixed(2).padStart(8),
        fixed(r.broker_cpu_s_per_10k, 2).padStart(7),
      ].join(' '),
    );
  }
  return lines.join('\n');
}

export interface Target {
  target: string;
  value: number | null;
  bound: number;
  op: '>=' | '<=' | '>';
  met: boolean | null;
}

function check(target: string, value: number | null, op: Target['op'], bound: number): Target {
  const met = value === null ? null : op === '>=' ? value >= bound : op === '<=' ? value <= bound : value > bound;
  return { target, value, bound, op, met };
}

/** The issue's targets, each as a measured ratio against its bound (null: not measured). */
export function evaluateTargets(cells: Cell[], rows: Aggregate[], fib: FibTiming[] | undefined): Target[] {
  const r = (a: string, b: string, config: string) => pairedRatio(cells, a, b, config);
  const targets: Target[] = [];
  for (const c of ['16', '128'])
    targets.push(check(`fib-rpc / floor, calls/s at c=${c}`, r('fib-rpc', 'floor', c), '>=', 0.8));
  targets.push(
    check(
      'fib-rpc / floor, p50 at c=1',
      pairedRatio(cells, 'fib-rpc', 'floor', '1', (x) => x.p50Ms),
      '<=',
      1.2,
    ),
  );
  targets.push(
    check('traced fib-rpc / floor + OTel, calls/s at c=128', r('fib-rpc-traced', 'floor-otel', '128'), '>=', 1),
  );
  targets.push(check('traced fib-rpc / floor, calls/s at c=128', r('fib-rpc-traced', 'floor', '128'), '>=', 0.5));
  for (const peer of ['rabbitmq-client', 'nestjs']) {
    for (const c of ['16', '128']) {
      targets.push(
        check(`fib-rpc / ${peer} (TCP_NODELAY), calls/s at c=${c}`, r('fib-rpc', `${peer}-nodelay`, c), '>=', 1.2),
      );
    }
    targets.push(check(`fib-rpc / ${peer} (default socket), calls/s at c=1`, r('fib-rpc', peer, '1'), '>=', 50));
  }
  const one = rows.find((x) => x.variant === 'fib-rpc' && x.config === '128');
  const two = rows.find((x) => x.variant === 'fib-rpc' && x.config === '128x2');
  targets.push(
    check(
      'fib-rpc, 2 servers / 1 server, calls/s at c=128',
      one && two ? two.calls_per_s / one.calls_per_s : null,
      '>',
      1,
    ),
  );
  targets.push(
    check('fib-rpc quorum / floor quorum, calls/s at c=128', r('fib-rpc-quorum', 'floor-quorum', '128'), '>=', 0.8),
  );
  // Quorum stays the default on one node only if it costs no more than this (issue 12).
  targets.push(
    check('fib-rpc quorum / floor (classic), calls/s at c=128', r('fib-rpc-quorum', 'floor', '128'), '>=', 0.9),
  );
  for (const [after, prior] of [
    ['fib-rpc', 'fib-rpc-before'],
    ['fib-rpc-traced', 'fib-rpc-traced-before'],
  ] as const) {
    for (const c of ['1', '16', '128', '128x2']) {
      const ratio = r(after, prior, c);
      if (ratio !== null) targets.push(check(`${after} after / before, calls/s at c=${c}`, ratio, '>=', 1));
    }
  }
  for (const t of fib ?? [])
    targets.push(check(`fib(${t.n}) cold, worst of ${t.reps}, ms`, t.coldMaxMs, '<=', t.limitMs));
  return targets;
}

export function formatTargets(targets: Target[]): string {
  const lines = ['targets'];
  for (const t of targets) {
    const mark = t.met === null ? 'n/a ' : t.met ? 'met ' : 'MISS';
    lines.push(`  ${mark} ${t.target}: ${t.value === null ? 'not measured' : t.value.toFixed(2)} (${t.op} ${t.bound})`);
  }
  return lines.join('\n');
}
