/**
 * `npm run bench [-- options]`: fib-rpc against the raw amqplib floor and its npm peers on
 * the local broker, interleaved, with ratios; or a soak run; or the fib microbenchmark.
 * See bench/README.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type FibTiming, formatFib } from './fib.ts';
import type { Broker } from './lib/broker.ts';
import { Brokers } from './lib/brokers.ts';
import {
  type ClientResult,
  DIST_DIR,
  FIB_N,
  firstUrl,
  inBuild,
  LAYOUT,
  ROOT,
  type RunRequest,
  sleep,
} from './lib/common.ts';
import type { SpanCount } from './lib/otlp-count.ts';
import { type Probe, runClient, ServerProcess } from './lib/procs.ts';
import {
  type Aggregate,
  aggregate,
  type Cell,
  evaluateTargets,
  formatQueueTypes,
  formatTable,
  formatTargets,
  formatTracingCost,
  queueTypeRows,
  type SpanCheck,
  tracingCostRows,
} from './lib/report.ts';
import { startSink } from './lib/sink.ts';
import {
  beforeVariants,
  EXTRA_VARIANTS,
  QUEUE_TYPE_VARIANTS,
  VARIANTS,
  type Variant,
  variantById,
} from './lib/variants.ts';

const USAGE = `usage: npm run bench -- [options]

  --variants a,b,...     variants to run (default: all but the extras): ${VARIANTS.map((v) => v.id).join(', ')}
                         extras: ${EXTRA_VARIANTS.map((v) => v.id).join(', ')}
  --concurrency list     client concurrencies; NxS runs S server processes (default: 1,16,128,128x2)
  --rounds N             interleaved rounds (default: 3)
  --duration S           measured seconds per run (default: 5)
  --warmup S             unmeasured seconds before each run (default: 1.5)
  --prefetch N           server prefetch for every variant that has one (default: 16)
  --quick                floor, fib-rpc (off and on), floor + OTel; 3 short rounds
  --queue-types          classic against quorum, on one node and on a 3-node RabbitMQ 4 cluster
                         that the benchmark starts (root; scripts/rabbitmq4.sh); concurrency 1,16,128
  --no-fib               skip the fib microbenchmark
  --fib                  only the fib microbenchmark
  --soak                 soak: --soak-calls calls (default 1000000) at --soak-concurrency (default 128)
                         on the first of --variants (default fib-rpc); RSS at start, middle, end
  --before DIST          also run fib-rpc built elsewhere (another checkout's dist/ folder) as
                         fib-rpc-before and fib-rpc-traced-before: before/after in one run
  --before-spans N       spans one traced call of the --before build exports (default 6, as
                         before the core enriched the instrumentation's spans; this build: 3)
  --cpu-prof DIR         write a V8 CPU profile of every client and server process to DIR
                         (summarise one with: node bench/profile.ts FILE.cpuprofile)
  --json                 print JSON instead of the table
  --json-file PATH       also write the JSON to PATH
`;

interface Config {
  label: string;
  concurrency: number;
  servers: number;
}

const { values } = parseArgs({
  options: {
    variants: { type: 'string' },
    concurrency: { type: 'string' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    prefetch: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'queue-types': { type: 'boolean', default: false },
    'no-fib': { type: 'boolean', default: false },
    fib: { type: 'boolean', default: false },
    soak: { type: 'boolean', default: false },
    'soak-calls': { type: 'string' },
    'soak-concurrency': { type: 'string' },
    'cpu-prof': { type: 'string' },
    before: { type: 'string' },
    'before-spans': { type: 'string' },
    json: { type: 'boolean', default: false },
    'json-file': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

/**
 * The peer libraries live in bench/'s own package (bench/package.json), out of the product's
 * dependency tree; a fresh clone has not installed them yet, and a changed lock file needs
 * a new install. npm's output goes to stderr: stdout is the table (or --json).
 */
function installPeers(): void {
  const installed = `${ROOT}bench/node_modules/.package-lock.json`;
  const lock = `${ROOT}bench/package-lock.json`;
  if (existsSync(installed) && statSync(installed).mtimeMs >= statSync(lock).mtimeMs) return;
  process.stderr.write('bench: installing the peer libraries (npm ci --prefix bench)\n');
  const npm = spawnSync('npm', ['ci', '--prefix', `${ROOT}bench`, '--no-audit', '--no-fund'], {
    stdio: ['ignore', 2, 2],
  });
  if (npm.status !== 0) throw new Error(`npm ci --prefix bench failed (${npm.status ?? npm.signal})`);
}

if (!values.fib) installPeers();

const quick = values.quick;
const preset = values['queue-types']
  ? QUEUE_TYPE_VARIANTS
  : quick
    ? ['floor', 'fib-rpc', 'fib-rpc-traced', 'floor-otel']
    : null;
const variantIds = values.variants?.split(',') ?? preset;
const before = values.before
  ? beforeVariants(
      resolvePath(values.before),
      values['before-spans'] === undefined ? undefined : Number(values['before-spans']),
    )
  : [];
const variants: Variant[] = variantIds ? variantIds.map((id) => variantById(id, before)) : [...VARIANTS, ...before];
const configs: Config[] = (values.concurrency ?? (values['queue-types'] ? '1,16,128' : '1,16,128,128x2'))
  .split(',')
  .map((label) => {
    const [c, s] = label.split('x');
    const concurrency = Number(c);
    const servers = s === undefined ? 1 : Number(s);
    if (!Number.isInteger(concurrency) || concurrency < 1 || !Number.isInteger(servers) || servers < 1) {
      throw new Error(`bad --concurrency entry "${label}"`);
    }
    return { label, concurrency, servers };
  });
const rounds = Number(values.rounds ?? 3);
const durationMs = Number(values.duration ?? (quick ? 1.5 : 5)) * 1000;
const warmupMs = Number(values.warmup ?? (quick ? 0.7 : 1.5)) * 1000;
const prefetch = Number(values.prefetch ?? 16);
const profileDir = values['cpu-prof'];
/** Node flags for every client and server process. */
const nodeFlags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${resolvePath(profileDir)}`] : [];

const log = (line: string) => process.stderr.write(`${line}\n`);
/** Tells this run's queues from another benchmark's on the same broker. */
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

/**
 * Whether the build takes AMQP_URL as a comma-separated list (connect to the first node that
 * answers, fail over to the next). A build that takes one URL is given a cluster's first node,
 * which is also the one a list connects to while it answers: the same path is measured.
 */
function takesUrlList(dist: string): boolean {
  const config = pathToFileURL(inBuild(dist, LAYOUT.config)).href;
  const probe = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { loadConfig } = await import(${JSON.stringify(config)});
       loadConfig({ AMQP_URL: 'amqp://u:p@127.0.0.1:1,amqp://u:p@127.0.0.1:2' });`,
    ],
    { stdio: 'ignore' },
  );
  return probe.status === 0;
}

function tracingEnv(variant: Variant, endpoint: string): Record<string, string> {
  if (!variant.tracing) return {};
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    ...(variant.sampleRatio === undefined
      ? { OTEL_TRACES_SAMPLER: 'always_on' }
      : { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: String(variant.sampleRatio) }),
    OTEL_METRICS_EXPORTER: 'none',
    OTEL_LOGS_EXPORTER: 'none',
  };
}

const sum = (probes: Probe[]) => probes.reduce((total, p) => total + p.cpu.userUs + p.cpu.systemUs, 0);

async function runCell(
  broker: Broker,
  endpoint: string,
  sinkBytes: () => number,
  variant: Variant,
  config: Config,
  round: number,
  request: Partial<RunRequest>,
  onMark?: (mark: SoakMark) => void,
): Promise<Cell & { result: ClientResult }> {
  // Soak runs (onMark) collect garbage before each memory mark, to see live memory.
  const flags = onMark ? ['--expose-gc'] : [];
  // Named for this run too: two benchmarks on one broker (the machine's is shared) would
  // otherwise consume each other's requests, which the span count showed as traces without
  // their server's spans and server spans without a call.
  const queue = `bench.${RUN_ID}.${variant.id}`;
  await broker.deleteQueues(queue, `${queue}.dlq`);
  const lostBefore = broker.lost;
  const urls = variant.client.kind === 'fib-rpc' && !urlLists.get(variant) ? firstUrl(broker.urls) : broker.urls;
  const env = { ...tracingEnv(variant, endpoint), AMQP_URL: urls };
  const servers = Array.from(
    { length: config.servers },
    () =>
      new ServerProcess(
        variant.server(queue, prefetch),
        { ...env, OTEL_SERVICE_NAME: `${variant.id}-server` },
        profileDir
          ? [
              ...flags,
              ...nodeFlags,
              `--cpu-prof-name=${variant.id}-c${config.label}-r${round}-server-\${pid}.cpuprofile`,
            ]
          : flags,
      ),
  );
  try {
    await broker
      .waitForConsumers(queue, config.servers, 60_000, () => servers.every((s) => s.alive))
      .catch((err) => {
        const said = servers.map((s) => s.stderr().trim()).filter(Boolean);
        throw new Error(`${(err as Error).message}${said.length > 0 ? `; the server said:\n${said.join('\n')}` : ''}`);
      });
    let serverStart: Probe[] = [];
    let brokerStart: number | undefined;
    let sinkStart = 0;
    const run: RunRequest = {
      type: 'run',
      kind: variant.client.kind,
      queue,
      queueType: variant.queueType,
      noDelay: variant.client.noDelay,
      concurrency: config.concurrency,
      warmupMs,
      durationMs,
      ...request,
    };
    const timeout = warmupMs + (run.count === undefined ? durationMs + 60_000 : 3_600_000);
    const result: ClientResult = await runClient(
      variant.client.preload,
      { ...variant.client.env, ...env, OTEL_SERVICE_NAME: `${variant.id}-client` },
      run,
      {
        onMeasuring: async () => {
          brokerStart = broker.cpuUs();
          sinkStart = sinkBytes();
          serverStart = await Promise.all(servers.map((s) => s.probe()));
        },
        onMark: onMark
          ? async (mark) => {
              const probes = await Promise.all(servers.map((s) => s.probe(30_000, true)));
              onMark({
                calls: mark.calls,
                clientRss: mark.rss,
                clientHeap: mark.heapUsed,
                clientExternal: mark.external,
                serverRss: probes.map((p) => p.rss),
                serverHeap: probes.map((p) => p.heapUsed),
                serverExternal: probes.map((p) => p.external),
              });
            }
          : undefined,
      },
      timeout,
      profileDir
        ? [...flags, ...nodeFlags, `--cpu-prof-name=${variant.id}-c${config.label}-r${round}-client.cpuprofile`]
        : flags,
    );
    const brokerEnd = broker.cpuUs();
    const serverEnd = await Promise.all(servers.map((s) => s.probe()));
    // Our admin connection would have noticed a broker restart (someone else's tests?).
    await broker.consumers(queue);
    if (broker.lost !== lostBefore) throw new Error('the broker restarted during the run');
    return {
      variant: variant.id,
      config: config.label,
      round,
      result,
      serverCpuUs: sum(serverEnd) - sum(serverStart),
      serverRss: serverEnd.map((p) => p.rss),
      brokerCpuUs: brokerStart === undefined || brokerEnd === undefined ? undefined : brokerEnd - brokerStart,
      sinkBytes: sinkBytes() - sinkStart,
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await broker.deleteQueues(queue, `${queue}.dlq`);
  }
}

function runFibChild(): Promise<FibTiming[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bench/fib.ts', '--json'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out) as FibTiming[]);
      else reject(new Error(`fib microbenchmark exited with ${code}`));
    });
  });
}

function emit(report: Record<string, unknown>, text: string): void {
  if (values['json-file']) writeFileSync(values['json-file'], `${JSON.stringify(report, null, 2)}\n`);
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`${text}\n`);
}

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  workload: `fib(${FIB_N}), tiny JSON payloads`,
};

if (values.fib) {
  const fib = await runFibChild();
  emit({ meta, fib }, formatFib(fib));
  process.exit(0);
}

/** Per fib-rpc variant on a cluster: does its build take the cluster's URL list? */
const urlLists = new Map<Variant, boolean>();
for (const variant of variants) {
  if (variant.client.kind !== 'fib-rpc' || variant.broker !== 'rabbitmq4x3') continue;
  const dist = variant.client.env.BENCH_DIST ?? DIST_DIR;
  urlLists.set(variant, takesUrlList(dist));
  if (!urlLists.get(variant)) log(`bench: ${variant.id}: this build takes one AMQP_URL; it gets the cluster's node 1`);
}

const brokers = await Brokers.open(
  variants.map((v) => v.broker),
  log,
);
const sink = await startSink();
const sinkBytes = () => sink.stats().bytes;
const metaFull = {
  ...meta,
  broker: brokers.describe(),
  prefetch,
  rounds,
  durationMs,
  warmupMs,
  /** fib-rpc variants on a cluster whose build took one URL (node 1's) instead of the list. */
  oneUrl: [...urlLists].filter(([, list]) => !list).map(([v]) => v.id),
  loadavgAtStart: loadavg(),
};
log(`bench: ${metaFull.broker}, node ${process.version}, ${meta.cpus} cpus, OTLP sink at ${sink.endpoint}`);

try {
  if (values.soak) {
    const variant = variantById(variantIds?.[0] ?? 'fib-rpc', before);
    const soakBroker = brokers.get(variant.broker);
    const calls = Number(values['soak-calls'] ?? 1_000_000);
    const concurrency = Number(values['soak-concurrency'] ?? 128);
    const marks: SoakMark[] = [];
    const at = [0, 0.25, 0.5, 0.75, 1].map((f) => Math.floor(calls * f));
    log(`soak: ${variant.id}, ${calls} calls at concurrency ${concurrency}`);
    const cell = await runCell(
      soakBroker,
      sink.endpoint,
      sinkBytes,
      variant,
      { label: String(concurrency), concurrency, servers: 1 },
      1,
      { count: calls, durationMs: undefined, warmupMs: 10_000, marks: at },
      (mark) => {
        marks.push(mark);
        log(`  ${mark.calls} calls: client RSS ${mb(mark.clientRss)} MB, server RSS ${mb(mark.serverRss[0] ?? 0)} MB`);
      },
    );
    marks.sort((a, b) => a.calls - b.calls);
    const first = marks[0];
    const last = marks.at(-1);
    const growth = (pick: (m: SoakMark) => number) => (first && last ? pick(last) - pick(first) : Number.NaN);
    const clientGrowth = growth((m) => m.clientRss);
    const serverGrowth = growth((m) => m.serverRss[0] ?? 0);
    const limit = 20 * 1024 * 1024;
    const flat = clientGrowth < limit && serverGrowth < limit;
    const r = cell.result;
    const lines = [
      `soak: ${variant.title}, ${r.calls} calls at concurrency ${concurrency}, ${r.errors} errors, ${(r.calls / r.seconds).toFixed(0)} calls/s, p99 ${r.p99Ms.toFixed(2)} ms, max ${r.maxMs.toFixed(1)} ms`,
      'memory after a full GC at each mark (start = after a 10 s warm-up), MB; heap: live JS heap; ext: Buffers and other memory held outside it',
      '     calls   client RSS  client heap  client ext   server RSS  server heap  server ext',
      ...marks.map((m) =>
        [
          String(m.calls).padStart(10),
          mb(m.clientRss).padStart(12),
          mb(m.clientHeap).padStart(12),
          mb(m.clientExternal).padStart(11),
          mb(m.serverRss[0] ?? 0).padStart(12),
          mb(m.serverHeap[0] ?? 0).padStart(12),
          mb(m.serverExternal[0] ?? 0).padStart(11),
        ].join(' '),
      ),
      `growth start to end: client RSS ${mb(clientGrowth)} MB (heap ${mb(growth((m) => m.clientHeap))}), server RSS ${mb(serverGrowth)} MB (heap ${mb(growth((m) => m.serverHeap[0] ?? 0))}): ${flat ? 'flat (< 20 MB)' : 'NOT FLAT (>= 20 MB)'}`,
    ];
    emit({ meta: metaFull, soak: { variant: variant.id, concurrency, marks, result: r, flat } }, lines.join('\n'));
  } else {
    const cells: Cell[] = [];
    const spansMissing: string[] = [];
    const total = configs.length * rounds * variants.length;
    let done = 0;
    for (const config of configs) {
      for (let round = 1; round <= rounds; round++) {
        // A B C, C B A, A B C ...: drift in the machine's load falls on every variant alike.
        const order = round % 2 === 1 ? variants : [...variants].reverse();
        for (const variant of order) {
          done++;
          const tag = `[${done}/${total}] c=${config.label} round ${round} ${variant.id}`;
          try {
            let cell: Awaited<ReturnType<typeof runCell>> | undefined;
            // Up to 3 tries: the shared broker may be restarted under us.
            for (let attempt = 1; cell === undefined; attempt++) {
              sink.take(); // what an earlier, failed attempt exported does not count
              try {
                cell = await runCell(brokers.get(variant.broker), sink.endpoint, sinkBytes, variant, config, round, {});
              } catch (err) {
                if (attempt >= 3) throw err;
                log(`${tag}: failed (${firstLine(err)}), trying again`);
                await sleep(5000);
              }
            }
            // Every call's spans, counted once both programs have exported and exited. Not
            // retried: a run that lost spans is a failed run.
            cell.spans = checkSpans(variant, cell.result, sink.take());
            if (cell.spans?.missing) spansMissing.push(`${tag}: ${cell.spans.missing}`);
            cells.push(cell);
            const r = cell.result;
            log(
              `${tag}: ${(r.calls / r.seconds).toFixed(0)} calls/s, p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(
                2,
              )} ms${r.errors ? `, ${r.errors} errors (${r.firstError})` : ''}${r.wrong ? `, ${r.wrong} WRONG` : ''}`,
            );
          } catch (err) {
            log(`${tag}: FAILED ${(err as Error).message}`);
            cells.push({ variant: variant.id, config: config.label, round, error: (err as Error).message });
          }
        }
      }
    }
    const fib = values['no-fib'] ? undefined : await runFibChild();
    const summary: Aggregate[] = aggregate(cells, variants, configs);
    const targets = evaluateTargets(cells, summary, fib);
    const queueTypes = queueTypeRows(cells, summary, variants, configs);
    const tracingCost = tracingCostRows(cells, summary, variants, configs);
    const load = (l: number[]) => l.map((x) => x.toFixed(1)).join(' ');
    const text = [
      `fib-rpc benchmark — ${metaFull.date}, ${metaFull.broker}, node ${process.version}, ${meta.cpus} cpus`,
      `load average at start ${load(metaFull.loadavgAtStart)}, at end ${load(loadavg())} (anything else running skews absolute numbers)`,
      `workload ${meta.workload}; ${rounds} interleaved rounds of ${durationMs / 1000} s (+${warmupMs / 1000} s warm-up); prefetch ${prefetch}`,
      '',
      formatTable(summary, configs),
      '',
      ...(tracingCost.length > 0 ? [formatTracingCost(tracingCost), ''] : []),
      ...(queueTypes.length > 0 ? [formatQueueTypes(queueTypes), ''] : []),
      ...(fib ? [formatFib(fib), ''] : []),
      formatTargets(targets),
    ].join('\n');
    emit(
      {
        meta: { ...metaFull, loadavgAtEnd: loadavg() },
        summary,
        tracingCost,
        queueTypes,
        targets,
        fib,
        cells,
        spansMissing,
      },
      text,
    );
    if (spansMissing.length > 0) {
      log(`bench: FAILED: spans missing at the sink\n  ${spansMissing.join('\n  ')}`);
      process.exitCode = 1;
    }
  }
} finally {
  await sink.close();
  await brokers.close();
}

interface SoakMark {
  calls: number;
  clientRss: number;
  clientHeap: number;
  clientExternal: number;
  serverRss: number[];
  serverHeap: number[];
  serverExternal: number[];
}

/**
 * Did every call of a traced variant reach the sink with all its spans? One trace per call
 * (each call is a root), `perCall` spans in each, warm-up calls included.
 */
function checkSpans(variant: Variant, result: ClientResult, count: SpanCount): SpanCheck | undefined {
  if (!variant.tracing || variant.spans === undefined) return undefined;
  const { perCall } = variant.spans;
  let short = 0;
  let extra = 0;
  for (const n of count.perTrace.values()) {
    if (n < perCall) short++;
    else if (n > perCall) extra++;
  }
  // A sampled variant keeps a random share of the traces: each one kept must be whole.
  const all = variant.spans.sampled === undefined;
  const absent = all ? Math.max(0, result.started - count.perTrace.size) : 0;
  const problems = [
    absent > 0 ? `${absent} of ${result.started} calls have no trace at the sink` : '',
    short > 0 ? `${short} traces have fewer than ${perCall} spans` : '',
    extra > 0 ? `${extra} traces have more than ${perCall} spans` : '',
    all && count.spans < result.started * perCall ? `${result.started * perCall - count.spans} spans short in all` : '',
  ].filter(Boolean);
  return {
    calls: result.started,
    traces: count.perTrace.size,
    spans: count.spans,
    perService: Object.fromEntries(count.perService),
    missing: problems.length > 0 ? problems.join('; ') : undefined,
  };
}

function firstLine(err: unknown): string {
  return ((err as Error).message ?? String(err)).split('\n')[0] ?? '';
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
