/**
 * One client process of the benchmark (`node bench/client.ts`, driven over IPC): the same
 * closed loop for every variant, `concurrency` callers each waiting for its reply before
 * the next call, with only the call itself differing. Latencies and CPU are measured from
 * inside, after a warm-up, and sent back to the parent.
 */
import amqp, { type Options } from 'amqplib';
import {
  AMQP_URL,
  type ClientMessage,
  type ClientResult,
  cpuSince,
  DIRECT_REPLY_TO,
  dist,
  FIB_ANSWER,
  FIB_N,
  firstUrl,
  LAYOUT,
  type RunRequest,
} from './lib/common.ts';
import { flushTracing } from './lib/flush.ts';

interface Caller {
  call(): Promise<unknown>;
  close(): Promise<void>;
}

const send = (message: ClientMessage) => process.send?.(message);
/** Present in soak runs (--expose-gc): memory marks then measure live memory, not garbage. */
const gc = (globalThis as { gc?: () => void }).gc;
/** Sends and waits until the message has left, so exiting right after loses nothing. */
const sendNow = (message: ClientMessage) =>
  new Promise<void>((resolve) => {
    if (process.send === undefined) resolve();
    else process.send(message, undefined, {}, () => resolve());
  });

/** Raw amqplib on direct reply-to: no timeout, no validation, no tracing, no metrics. */
async function floorCaller(run: RunRequest): Promise<Caller> {
  const model = await amqp.connect(firstUrl(AMQP_URL), { noDelay: true });
  const channel = await model.createChannel();
  const waiting = new Map<string, (body: Buffer) => void>();
  await channel.consume(
    DIRECT_REPLY_TO,
    (msg) => {
      if (msg === null) return;
      const id = msg.properties.correlationId as string;
      const done = waiting.get(id);
      if (done === undefined) return;
      waiting.delete(id);
      done(msg.content);
    },
    { noAck: true },
  );
  let next = 0;
  // For the extra floor-* variants: which of fib-rpc's request properties to add, to see
  // what each costs (mostly the broker).
  const extras = new Set((process.env.BENCH_FLOOR_EXTRAS ?? '').split(',').filter(Boolean));
  const params = { n: FIB_N };
  return {
    call: () =>
      new Promise((resolve) => {
        const id = String(next++);
        waiting.set(id, (reply) => resolve((JSON.parse(reply.toString()) as { result: string }).result));
        const options: Options.Publish = {
          correlationId: id,
          replyTo: DIRECT_REPLY_TO,
          contentType: 'application/json',
        };
        if (extras.size > 0) {
          if (extras.has('ttl')) options.expiration = '30000';
          if (extras.has('mandatory')) options.mandatory = true;
          if (extras.has('headers')) options.headers = { 'x-rpc-version': 1, 'x-deadline': Date.now() + 30_000 };
          if (extras.has('props')) {
            options.messageId = id;
            options.type = 'fib';
          }
        }
        channel.publish('', run.queue, Buffer.from(JSON.stringify(params)), options);
      }),
    close: () => model.close(),
  };
}

async function fibRpcCaller(run: RunRequest): Promise<Caller> {
  const { RpcClient } = await dist<typeof import('../packages/rpc/src/index.ts')>(LAYOUT.rpc);
  const { createLogger } = await dist<typeof import('../src/cmd/common/log.ts')>(LAYOUT.log);
  const client = await RpcClient.connect({
    // Older builds (--before) ignore it: they named themselves.
    serviceName: 'fib-rpc',
    url: AMQP_URL,
    heartbeatS: 10,
    connectTimeoutMs: 5000,
    queue: run.queue,
    timeoutMs: 30_000,
    retries: 0,
    maxInFlight: 1024,
    log: createLogger('bench-client', 'warn'),
  });
  const params = { n: FIB_N };
  return {
    call: async () => (await client.call('fib', params)).result,
    close: () => client.close(),
  };
}

async function rabbitmqClientCaller(run: RunRequest): Promise<Caller> {
  const { Connection } = await import('rabbitmq-client');
  const rabbit = new Connection({ url: firstUrl(AMQP_URL), noDelay: run.noDelay });
  rabbit.on('error', () => {});
  const rpc = rabbit.createRPCClient();
  return {
    call: async () => ((await rpc.send(run.queue, { n: FIB_N })).body as { result: string }).result,
    close: async () => {
      await rpc.close();
      await rabbit.close();
    },
  };
}

async function nestjsCaller(run: RunRequest): Promise<Caller> {
  await import('reflect-metadata');
  const { ClientRMQ } = await import('@nestjs/microservices');
  const { firstValueFrom } = await import('rxjs');
  const client = new ClientRMQ({
    urls: [firstUrl(AMQP_URL)],
    queue: run.queue,
    queueOptions: { durable: true, arguments: { 'x-queue-type': run.queueType } },
    ...(run.noDelay ? { socketOptions: { connectionOptions: { noDelay: true } } } : {}),
  });
  await client.connect();
  return {
    call: () => firstValueFrom(client.send<string>('fib', { n: FIB_N })),
    close: () => client.close(),
  };
}

const callers = {
  floor: floorCaller,
  'fib-rpc': fibRpcCaller,
  'rabbitmq-client': rabbitmqClientCaller,
  nestjs: nestjsCaller,
};

async function loadHistogram() {
  const { LatencyHistogram } = await dist<typeof import('../src/cmd/fib-rpc-client/histogram.ts')>(LAYOUT.histogram);
  return new LatencyHistogram();
}

async function run(request: RunRequest): Promise<void> {
  const caller = await callers[request.kind](request);
  const histogram = await loadHistogram();
  const marks = [...(request.marks ?? [])];
  let measuring = false;
  let stopping = false;
  let calls = 0;
  let started = 0;
  let errors = 0;
  let wrong = 0;
  let firstError: string | undefined;
  let cpuStart = process.cpuUsage();
  let begin = performance.now();
  const limit = request.count ?? Number.POSITIVE_INFINITY;

  const worker = async () => {
    while (!stopping) {
      const t0 = performance.now();
      started++;
      try {
        const result = await caller.call();
        if (!measuring) continue;
        histogram.record(performance.now() - t0);
        calls++;
        if (result !== FIB_ANSWER) wrong++;
      } catch (err) {
        if (!measuring) continue;
        errors++;
        firstError ??= (err as Error).message;
      }
      if (calls + errors >= limit) stopping = true;
      if (marks.length > 0 && calls >= marks[0]!) {
        marks.shift();
        gc?.();
        const memory = process.memoryUsage();
        send({ type: 'mark', calls, rss: memory.rss, heapUsed: memory.heapUsed, external: memory.external });
      }
    }
  };

  const workers = Array.from({ length: request.concurrency }, worker);
  setTimeout(() => {
    measuring = true;
    cpuStart = process.cpuUsage();
    begin = performance.now();
    send({ type: 'measuring' });
    if (marks[0] === 0) {
      marks.shift();
      gc?.();
      const memory = process.memoryUsage();
      send({ type: 'mark', calls: 0, rss: memory.rss, heapUsed: memory.heapUsed, external: memory.external });
    }
    if (request.durationMs !== undefined) {
      setTimeout(() => {
        stopping = true;
      }, request.durationMs);
    }
  }, request.warmupMs);
  await Promise.all(workers);
  const seconds = (performance.now() - begin) / 1000;
  const cpu = cpuSince(cpuStart);
  const result: ClientResult = {
    calls,
    started,
    errors,
    wrong,
    firstError,
    seconds,
    p50Ms: histogram.quantile(0.5),
    p99Ms: histogram.quantile(0.99),
    maxMs: histogram.max,
    cpu,
    rss: process.memoryUsage().rss,
  };
  await sendNow({ type: 'result', result });
  await Promise.race([caller.close().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000))]);
  // Traced variants: the last batch of spans goes to the sink before the process exits.
  await flushTracing(2500);
}

process.once('message', (request: RunRequest) => {
  run(request).then(
    () => process.exit(0),
    async (err: unknown) => {
      await sendNow({ type: 'failed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      process.exit(1);
    },
  );
});
