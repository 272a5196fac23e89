/**
 * The variants the benchmark compares: how to start each one's server and client.
 */
import { pathToFileURL } from 'node:url';
import { type ClientKind, projectUrl, type QueueType, ROOT, type ServerKind } from './common.ts';

export interface ProcessSpec {
  /** Node flags before the script, e.g. --import preloads. */
  execArgv: string[];
  script: string;
  env: Record<string, string>;
}

export interface Variant {
  id: string;
  title: string;
  queueType: QueueType;
  /** Ratios are taken against this variant (the floor on the same queue type). */
  floor: string;
  tracing: boolean;
  client: { kind: ClientKind; noDelay: boolean; preload: string[]; env: Record<string, string> };
  server: (queue: string, prefetch: number) => ProcessSpec;
}

const probe = projectUrl('bench/lib/probe.ts');
const DIST = `${ROOT}dist`;
const stockOtel = projectUrl('bench/lib/otel-stock.ts');
const tracingOff = { OTEL_SDK_DISABLED: 'true' };

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
  return (queue: string, prefetch: number): ProcessSpec => ({
    execArgv: ['--import', pathToFileURL(`${dist}/telemetry.js`).href, '--import', probe],
    script: `${dist}/server/main.js`,
    env: {
      RPC_QUEUE: queue,
      RPC_QUEUE_TYPE: queueType,
      PREFETCH: String(prefetch),
      HTTP_PORT: '0',
      LOG_LEVEL: 'warn',
      ...(tracing ? {} : tracingOff),
    },
  });
}

function fibRpc(
  id: string,
  title: string,
  queueType: QueueType,
  tracing: boolean,
  floor: string,
  dist = DIST,
): Variant {
  return {
    id,
    title,
    queueType,
    floor,
    tracing,
    client: {
      kind: 'fib-rpc',
      noDelay: true,
      preload: [pathToFileURL(`${dist}/telemetry.js`).href],
      env: { ...(tracing ? {} : tracingOff), ...(dist === DIST ? {} : { BENCH_DIST: dist }) },
    },
    server: fibRpcServer(queueType, tracing, dist),
  };
}

/** fib-rpc built from another checkout (its dist/ folder), to measure before against after. */
export function beforeVariants(dist: string): Variant[] {
  return [
    fibRpc('fib-rpc-before', 'before: fib-rpc, tracing off', 'classic', false, 'floor', dist),
    fibRpc('fib-rpc-traced-before', 'before: fib-rpc, tracing on', 'classic', true, 'floor', dist),
  ];
}

function peer(id: string, title: string, kind: 'rabbitmq-client' | 'nestjs', noDelay: boolean): Variant {
  return {
    id,
    title,
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
    queueType: 'classic',
    floor: 'floor',
    tracing: true,
    client: { kind: 'floor', noDelay: true, preload: [stockOtel], env: {} },
    server: benchServer('floor', 'classic', true, [stockOtel]),
  },
  {
    id: 'floor-quorum',
    title: 'floor: raw amqplib (quorum)',
    queueType: 'quorum',
    floor: 'floor-quorum',
    tracing: false,
    client: { kind: 'floor', noDelay: true, preload: [], env: {} },
    server: benchServer('floor', 'quorum', true),
  },
  fibRpc('fib-rpc-quorum', 'fib-rpc, tracing off (quorum)', 'quorum', false, 'floor-quorum'),
  peer('rabbitmq-client', 'rabbitmq-client, default socket', 'rabbitmq-client', false),
  peer('rabbitmq-client-nodelay', 'rabbitmq-client, TCP_NODELAY', 'rabbitmq-client', true),
  peer('nestjs', 'NestJS RMQ, default socket', 'nestjs', false),
  peer('nestjs-nodelay', 'NestJS RMQ, TCP_NODELAY', 'nestjs', true),
];

function floorWith(extras: string): Variant {
  return {
    id: `floor-${extras.replaceAll(',', '-')}`,
    title: `floor + ${extras.replaceAll(',', ' + ')}`,
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
  floorWith('ttl'),
  floorWith('mandatory'),
  floorWith('headers'),
  floorWith('props'),
  floorWith('ttl,mandatory,headers,props'),
  {
    ...peer('nestjs-noack', 'NestJS RMQ, all defaults (noAck)', 'nestjs', false),
    server: benchServer('nestjs', 'classic', false, [], { BENCH_NEST_NOACK: 'true' }),
  },
];

export function variantById(id: string, more: Variant[] = []): Variant {
  const found = [...VARIANTS, ...EXTRA_VARIANTS, ...more].find((v) => v.id === id);
  if (found === undefined) {
    const known = [...VARIANTS, ...EXTRA_VARIANTS, ...more].map((v) => v.id).join(', ');
    throw new Error(`unknown variant "${id}"; known: ${known}`);
  }
  return found;
}
