/**
 * What the benchmark's processes share: where things are, the messages they exchange over
 * IPC, and typed access to the built project (dist/), which is what users run.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';
/** The workload: fib(20), a tiny request and a tiny reply. */
export const FIB_N = 20;
export const FIB_ANSWER = '6765';

/** A file of the project as an absolute file URL (for --import and dynamic import). */
export function projectUrl(path: string): string {
  return pathToFileURL(`${ROOT}${path}`).href;
}

/** The build under test: dist/, or another checkout's (BENCH_DIST, for before/after runs). */
export const DIST_DIR = process.env.BENCH_DIST ?? `${ROOT}dist`;

/**
 * Where each module the benchmark uses sits in a build, newest layout first. A --before
 * checkout may predate the layout of src/cmd/, src/telemetry/ and the RPC core's own package
 * (packages/rpc, built next to dist/), and before/after must still run in one benchmark.
 */
export const LAYOUT = {
  /** The library's public entry (RpcClient). */
  rpc: ['../packages/rpc/dist/index.js', 'rpc/index.js', 'rpc/client.js'],
  log: ['cmd/common/log.js', 'log.js'],
  histogram: ['cmd/fib-rpc-client/histogram.js', 'client/histogram.js'],
  fib: ['fib/fib.js'],
  config: ['cmd/common/config.js', 'config.js'],
  /** OpenTelemetry's start-up, preloaded into the benchmark's fib-rpc client process. */
  telemetry: ['telemetry/bootstrap.js', 'telemetry.js'],
} as const;

/** The first of `candidates` that exists in the build at `dir`. */
export function inBuild(dir: string, candidates: readonly string[]): string {
  const found = candidates.find((path) => existsSync(`${dir}/${path}`));
  if (found === undefined) throw new Error(`${dir} has none of ${candidates.join(', ')}: build it first`);
  return `${dir}/${found}`;
}

/** Loads a module of the build under test, typed by its source. */
export async function dist<T>(candidates: readonly string[]): Promise<T> {
  return (await import(pathToFileURL(inBuild(DIST_DIR, candidates)).href)) as T;
}

/**
 * How a build's server starts: through the checkout's bin/ where the build has the programs
 * under cmd/ (bin/ then loads telemetry itself), else the older `--import telemetry.js main.js`.
 */
export function serverEntry(dir: string): { preload: string[]; script: string } {
  if (existsSync(`${dir}/cmd/fib-rpc-server/main.js`)) {
    return { preload: [], script: fileURLToPath(new URL('../bin/fib-rpc-server.js', pathToFileURL(`${dir}/`))) };
  }
  return { preload: [pathToFileURL(`${dir}/telemetry.js`).href], script: `${dir}/server/main.js` };
}

/**
 * Raw amqplib (the floor, the admin connection) takes one URL; fib-rpc takes AMQP_URL as a
 * comma-separated list and connects to the first that answers, which is this one.
 */
export function firstUrl(urls: string): string {
  return urls.split(',')[0]!.trim();
}

export type ServerKind = 'floor' | 'rabbitmq-client' | 'nestjs';
export type ClientKind = 'floor' | 'fib-rpc' | 'rabbitmq-client' | 'nestjs';
export type QueueType = 'classic' | 'quorum';

export interface CpuSample {
  userUs: number;
  systemUs: number;
}

/** Parent -> server: how much CPU and memory so far. */
export interface ProbeRequest {
  type: 'probe';
  id: number;
  /** Collect garbage first (when the process runs with --expose-gc). */
  gc?: boolean;
}
export interface ProbeReply {
  type: 'probe';
  id: number;
  cpu: CpuSample;
  rss: number;
  heapUsed: number;
  /** Memory outside the JS heap held by JS objects, Buffers included. */
  external: number;
}

/** Parent -> client: what to run. */
export interface RunRequest {
  type: 'run';
  kind: ClientKind;
  queue: string;
  queueType: QueueType;
  noDelay: boolean;
  concurrency: number;
  warmupMs: number;
  /** Measure for this long ... */
  durationMs?: number;
  /** ... or for this many calls (soak). */
  count?: number;
  /** Report memory after these many measured calls (soak). */
  marks?: number[];
}

/** Client -> parent. */
export type ClientMessage =
  | { type: 'measuring' }
  | { type: 'mark'; calls: number; rss: number; heapUsed: number; external: number }
  | { type: 'result'; result: ClientResult }
  | { type: 'failed'; error: string };

export interface ClientResult {
  /** Calls answered in the measured window. */
  calls: number;
  /** Every call begun, warm-up included: each makes one trace when tracing is on. */
  started: number;
  errors: number;
  wrong: number;
  firstError?: string;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  cpu: CpuSample;
  rss: number;
}

export function cpuSince(before: NodeJS.CpuUsage): CpuSample {
  const now = process.cpuUsage(before);
  return { userUs: now.user, systemUs: now.system };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
