/**
 * The variants the benchmark compares: how to start each one's server and client.
 */
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { type ClientKind, LAYOUT, projectUrl, type QueueType, ROOT, type ServerKind, serverEntry } from './common.ts';

export interface ProcessSpec {
  /** Node flags before the script, e.g. --import preloads. */
  execArgv: string[];
  script: string;
  env: Record<string, string>;
}

/**
 * Which broker a variant runs against: the machine's own (AMQP_URL), or a RabbitMQ 4 cluster
 * of 1 or 3 nodes that the benchmark starts on loopback ports of its own
 * (scripts/rabbitmq4.sh, root) and removes at the end.
 */
export type BrokerId = 'local' | 'rabbitmq4x1' | 'rabbitmq4x3';

export interface Variant {
  id: string;
  title: string;
  broker: BrokerId;
  queueType: QueueType;
  /** Ratios are taken against this variant (the floor on the same queue type). */
  floor: string;
  tracing: boolean;
  /**
   * Traced variants: the spans every call must reach the sink with (the run fails when any
   * call has fewer), and the variant that is the same without tracing.
   */
  spans?: { perCall: number; untraced: string; sampled?: number };
  /** OTEL_TRACES_SAMPLER_ARG for parentbased_traceidratio; traced variants default to always_on. */
  sampleRatio?: number;
  client: { kind: ClientKind; noDelay: boolean; preload: string[]; env: Record<string, string> };
  server: (queue: string, prefetch: number) => ProcessSpec;
}

const probe = projectUrl('bench/lib/probe.ts');
const DIST = `${ROOT}dist`;
const stockOtel = projectUrl('bench/lib/otel-stock.ts');
const tracingOff = { OTEL_SDK_DISABLED: 'true' };
/**
 * What one traced fib-rpc call exports, both programs together: the client's call span and
 * the server's process span (packages/rpc/src/spans.ts).
 */
const FIB_RPC_SPANS_PER_CALL = 2;
/**
 * What a build from before the core enriched the instrumentation's spans (`--before`, e.g.
 * b63b092) exports: client call, publish, server process, handle, reply publish, reply
 * process. `--before-spans` tells the benchmark otherwise for a newer build.
 */
export const SPANS_PER_CALL_BEFORE = 6;

function benchServer(
  kind: ServerKind,
  queueType: QueueType,
  noDelay: boolean,
  preload: string[] = [],
  extra: Record<string, string> = {},
) {
  return (queue: string, prefetch: number): ProcessSpec => ({
    execArgv: [...preload.flatMap((url) => ['--import', url]), '--import', probe],
    script: 'bench/server.ts',
    env: {
      BENCH_KIND: kind,
      BENCH_QUEUE: queue,
      BENCH_QUEUE_TYPE: queueType,
      BENCH_PREFETCH: String(prefetch),
      BENCH_NODELAY: String(noDelay),
      ...extra,
    },
  });
}

/** fib-rpc's real server entry point, as deployed: config from env, metrics, health HTTP. */
function fibRpcServer(queueType: QueueType, tracing: boolean, dist: string) {
  return (queue: string, prefetch: number): ProcessSpec => {
    const entry = serverEntry(dist);
    return {
      execArgv: [...entry.preload.flatMap((url) => ['--import', url]), '--import', probe],
      script: entry.script,
      env: {
        RPC_QUEUE: queue,
        RPC_QUEUE_TYPE: queueType,
        PREFETCH: String(prefetch),
        HTTP_PORT: '0',
        LOG_LEVEL: 'warn',
        ...(tracing ? {} : tracingOff),
      },
    };
  };
}

/** The build's telemetry start-up, which the benchmark's fib-rpc client process preloads. */
function telemetryOf(dist: string): string {
  const path = LAYOUT.telemetry.map((p) => `${dist}/${p}`).find((p) => existsSync(p));
  return pathToFileURL(path ?? `${dist}/${LAYOUT.telemetry[0]}`).href;
}

function fibRpc(
  id: string,
  title: string,
  queueType: QueueType,
  tracing: boolean,
  floor: string,
  dist = DIST,
  broker: BrokerId = 'local',
  spansPerCall = FIB_RPC_SPANS_PER_CALL,
): Variant {
  return {
    id,
    title,
    broker,
    queueType,
    floor,
    tracing,
    ...(tracing ? { spans: { perCall: spansPerCall, untraced: id.replace('-traced', '') } } : {}),
    client: {
      kind: 'fib-rpc',
      noDelay: true,
      preload: [telemetryOf(dist)],
      env: { ...(tracing ? {} : tracingOff), ...(dist === DIST ? {} : { BENCH_DIST: dist }) },
    },
    server: fibRpcServer(queueType, tracing, dist),
  };
}

/** fib-rpc built from another checkout (its dist/ folder), to measure before against after. */
export function beforeVariants(dist: string, spansPerCall = SPANS_PER_CALL_BEFORE): Variant[] {
  return [
    fibRpc('fib-rpc-before', 'before: fib-rpc, tracing off', 'classic', false, 'floor', dist),
    fibRpc(
      'fib-rpc-traced-before',
      'before: fib-rpc, tracing on',
      'classic',
      true,
      'floor',
      dist,
      'local',
      spansPerCall,
    ),
  ];
}

function peer(id: string, title: string, kind: 'rabbitmq-client' | 'nestjs', noDelay: boolean): Variant {
  return {
    id,
    title,
    broker: 'local',
    queueType: 'classic',
    floor: 'floor',
    tracing: false,
    client: { kind, noDelay, preload: [], env: {} },
    server: benchServer(kind, 'classic', noDelay),
  };
}

export const VARIANTS: Variant[] = [
  {
    id: 'floor',
    title: 'floor: raw amqplib (classic)',
    broker: 'local',
    queueType: 'classic',
    floor: 'floor',
    tracing: false,
    client: { kind: 'floor', noDelay: true, preload: [], env: {} },
    server: benchServer('floor', 'classic', true),
  },
  fibRpc('fib-rpc', 'fib-rpc, tracing off (classic)', 'classic', false, 'floor'),
  fibRpc('fib-rpc-traced', 'fib-rpc, tracing on (classic)', 'classic', true, 'floor'),
  {
    id: 'floor-otel',
    title: 'floor + stock OTel (classic)',
    broker: 'local',
    queueType: 'classic',
    floor: 'floor',
    tracing: true,
    // publish, process, reply publish, reply process: the instrumentation's spans alone.
    spans: { perCall: 4, untraced: 'floor' },
    client: { kind: 'floor', noDelay: true, preload: [stockOtel], env: {} },
    server: benchServer('floor', 'classic', true, [stockOtel]),
  },
  floorOn('floor-quorum', 'floor: raw amqplib (quorum)', 'quorum', 'local'),
  fibRpc('fib-rpc-quorum', 'fib-rpc, tracing off (quorum)', 'quorum', false, 'floor-quorum'),
  peer('rabbitmq-client', 'rabbitmq-client, default socket', 'rabbitmq-client', false),
  peer('rabbitmq-client-nodelay', 'rabbitmq-client, TCP_NODELAY', 'rabbitmq-client', true),
  peer('nestjs', 'NestJS RMQ, default socket', 'nestjs', false),
  peer('nestjs-nodelay', 'NestJS RMQ, TCP_NODELAY', 'nestjs', true),
];

/** Traced fib-rpc with a sampler that keeps `ratio` of the traces: what sampling saves (docs/operations.md). */
function sampled(ratio: number): Variant {
  const base = fibRpc('fib-rpc-traced', '', 'classic', true, 'floor');
  const percent = `${ratio * 100}`;
  return {
    ...base,
    id: `fib-rpc-traced-${percent}pct`,
    title: `fib-rpc, tracing ${percent} % sampled`,
    sampleRatio: ratio,
    spans: { perCall: FIB_RPC_SPANS_PER_CALL, untraced: 'fib-rpc', sampled: ratio },
  };
}

/** The floor on another queue type or broker; it is its own reference there. */
function floorOn(id: string, title: string, queueType: QueueType, broker: BrokerId): Variant {
  return {
    id,
    title,
    broker,
    queueType,
    floor: id,
    tracing: false,
    client: { kind: 'floor', noDelay: true, preload: [], env: {} },
    server: benchServer('floor', queueType, true),
  };
}

function floorWith(extras: string): Variant {
  return {
    id: `floor-${extras.replaceAll(',', '-')}`,
    title: `floor + ${extras.replaceAll(',', ' + ')}`,
    broker: 'local',
    queueType: 'classic',
    floor: 'floor',
    tracing: false,
    client: { kind: 'floor', noDelay: true, preload: [], env: { BENCH_FLOOR_EXTRAS: extras } },
    server: benchServer('floor', 'classic', true),
  };
}

/**
 * Not run by default. NestJS exactly as it comes (noAck, so at-most-once), for reference;
 * and the floor with each of the properties fib-rpc's requests carry: expiration (ttl),
 * mandatory, the x-rpc-version and x-deadline headers, message_id and type (props).
 */
export const EXTRA_VARIANTS: Variant[] = [
  sampled(0.1),
  sampled(0.01),
  floorWith('ttl'),
  floorWith('mandatory'),
  floorWith('headers'),
  floorWith('props'),
  floorWith('ttl,mandatory,headers,props'),
  {
    ...peer('nestjs-noack', 'NestJS RMQ, all defaults (noAck)', 'nestjs', false),
    server: benchServer('nestjs', 'classic', false, [], { BENCH_NEST_NOACK: 'true' }),
  },
  // Quorum queues where they replicate: a RabbitMQ 4 cluster of three nodes on this machine.
  // fib-rpc gets the nodes' URL list; the floor, like any single-URL client, node 1's.
  floorOn('floor-quorum-3node', 'floor: raw amqplib (quorum x3)', 'quorum', 'rabbitmq4x3'),
  fibRpc(
    'fib-rpc-quorum-3node',
    'fib-rpc, tracing off (quorum x3)',
    'quorum',
    false,
    'floor-quorum-3node',
    DIST,
    'rabbitmq4x3',
  ),
  // The same RabbitMQ 4 as one node: what the version changes, apart from the replication.
  floorOn('floor-quorum-4', 'floor: raw amqplib (quorum, 4.0)', 'quorum', 'rabbitmq4x1'),
  fibRpc(
    'fib-rpc-quorum-4',
    'fib-rpc, tracing off (quorum, 4.0)',
    'quorum',
    false,
    'floor-quorum-4',
    DIST,
    'rabbitmq4x1',
  ),
];

/**
 * --queue-types: what decides the request queue's type, in one run. Single node classic and
 * quorum, each against its floor, and quorum on a 3-node cluster (and on one node of the
 * same RabbitMQ 4, to tell the version from the replication).
 */
export const QUEUE_TYPE_VARIANTS = [
  'floor',
  'fib-rpc',
  'floor-quorum',
  'fib-rpc-quorum',
  'floor-quorum-4',
  'fib-rpc-quorum-4',
  'floor-quorum-3node',
  'fib-rpc-quorum-3node',
];

export function variantById(id: string, more: Variant[] = []): Variant {
  const found = [...VARIANTS, ...EXTRA_VARIANTS, ...more].find((v) => v.id === id);
  if (found === undefined) {
    const known = [...VARIANTS, ...EXTRA_VARIANTS, ...more].map((v) => v.id).join(', ');
    throw new Error(`unknown variant "${id}"; known: ${known}`);
  }
  return found;
}
