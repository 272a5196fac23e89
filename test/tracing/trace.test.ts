import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { Jaeger, type JaegerSpan, type JaegerTrace, parentOf, serviceOf, summarise, tag } from '../support/jaeger.ts';
import { childEnv, runClient, ServerProcess } from '../support/processes.ts';
import { declareWorkQueue } from '../support/queues.ts';

/**
 * The built server and client, run as separate processes with tracing on, export over
 * OTLP to a real Jaeger; the assertions read the traces back from Jaeger's query API.
 */
let jaeger: Jaeger;
let admin: BrokerAdmin;
let queue: string;
let server: ServerProcess;

function tracingEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
  return {
    OTEL_SDK_DISABLED: undefined,
    OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint,
    OTEL_TRACES_SAMPLER: 'always_on',
    ...extra,
  };
}

before(async () => {
  jaeger = await Jaeger.start();
  admin = await BrokerAdmin.open();
  queue = admin.track(uniqueQueue('traced'));
  // The server exports often; the one-shot client keeps the default 5 s batch delay, so
  // finding its spans proves it flushes on exit.
  server = await ServerProcess.start({
    RPC_QUEUE: queue,
    LOG_LEVEL: 'debug',
    ...tracingEnv({ OTEL_BSP_SCHEDULE_DELAY: '100' }),
  });
});

after(async () => {
  await server?.stop();
  await admin?.close();
  await jaeger?.stop();
});

const byName = (trace: JaegerTrace, service: string, name: string): JaegerSpan[] =>
  trace.spans.filter((s) => serviceOf(trace, s) === service && s.operationName === name);

function only(trace: JaegerTrace, service: string, name: string): JaegerSpan {
  const found = byName(trace, service, name);
  assert.equal(found.length, 1, `one ${service}:${name} in ${JSON.stringify(summarise(trace), null, 1)}`);
  return found[0] as JaegerSpan;
}

/** The server's span of a request: instrumentation-amqplib's process span, which the core enriches with rpc.*. */
const serverSpans = (t: JaegerTrace, service = 'fib-rpc-server') =>
  t.spans.filter(
    (s) => serviceOf(t, s) === service && s.operationName.endsWith(' process') && tag(s, 'rpc.method') === 'fib',
  );

function serverSpan(t: JaegerTrace): JaegerSpan {
  const found = serverSpans(t);
  assert.equal(found.length, 1, `one server span in ${JSON.stringify(summarise(t), null, 1)}`);
  return found[0] as JaegerSpan;
}

/** Client and server export separately: a trace is complete once both have landed, in either order. */
const bothServices = (t: JaegerTrace) =>
  t.spans.some((s) => serviceOf(t, s) === 'fib-rpc-client' && s.operationName === 'call fib') &&
  serverSpans(t).length > 0;

const hasError = (span: JaegerSpan) => tag(span, 'error') === true || tag(span, 'otel.status_code') === 'ERROR';
const hasException = (span: JaegerSpan) =>
  span.logs.some((log) => log.fields.some((f) => f.key === 'event' && f.value === 'exception'));

async function tracedCall(args: string[], env: Record<string, string> = {}) {
  const run = await runClient(['--json', ...args], { RPC_QUEUE: queue, ...tracingEnv(env) });
  return run;
}

/** The trace id a failed call printed with --verbose. */
function verboseTraceId(stderr: string): string {
  const match = /trace ([0-9a-f]{32}): open in Jaeger/.exec(stderr);
  assert.ok(match?.[1], `a trace line on stderr: ${stderr}`);
  return match[1];
}

describe('one trace per RPC, client to server and back', () => {
  it('holds both services with the right parent/child links and attributes', async () => {
    const run = await tracedCall(['30']);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.equal(out.result, '832040');
    assert.match(out.trace_id, /^[0-9a-f]{32}$/);

    const trace = await jaeger.waitForTrace(out.trace_id, (t) => t.spans.length >= 3);
    // The exact tree (packages/rpc/src/spans.ts): the core's call span is the request's send
    // span, the instrumentation's process span is the server span (the core adds the RPC
    // attributes to it), and neither program adds a publish span beside them, nor the client
    // a process span of the reply; every span hangs from the one before, so a span missing,
    // duplicated or in a trace of its own fails here.
    assert.deepEqual(
      trace.spans.map((s) => `${serviceOf(trace, s)}:${s.operationName}`).sort(),
      ['fib-rpc-client:call fib', 'fib-rpc-client:fib-rpc-client fib', `fib-rpc-server:${queue} process`].sort(),
      JSON.stringify(summarise(trace), null, 1),
    );
    const root = only(trace, 'fib-rpc-client', 'fib-rpc-client fib');
    const call = only(trace, 'fib-rpc-client', 'call fib');
    const consume = only(trace, 'fib-rpc-server', `${queue} process`);

    assert.equal(parentOf(root), undefined, 'the CLI span is the root');
    assert.equal(parentOf(call), root.spanID);
    assert.equal(parentOf(consume), call.spanID, "the server's span continues the client's call");

    assert.equal(tag(call, 'span.kind'), 'client');
    assert.equal(tag(call, 'rpc.system'), 'fib-rpc');
    assert.equal(tag(call, 'rpc.method'), 'fib');
    assert.equal(tag(call, 'rpc.service'), queue);
    assert.equal(tag(call, 'fib.n'), 30);
    assert.equal(tag(call, 'messaging.system'), 'rabbitmq');
    assert.equal(tag(call, 'messaging.operation.type'), 'send');
    assert.equal(tag(call, 'messaging.rabbitmq.destination.routing_key'), queue);
    assert.equal(tag(call, 'messaging.message.conversation_id'), out.correlation_id);
    assert.equal(tag(consume, 'span.kind'), 'consumer');
    assert.equal(tag(consume, 'rpc.system'), 'fib-rpc');
    assert.equal(tag(consume, 'rpc.method'), 'fib');
    assert.equal(tag(consume, 'rpc.service'), queue);
    assert.equal(tag(consume, 'messaging.operation.type'), 'process');
    assert.equal(tag(consume, 'messaging.message.conversation_id'), out.correlation_id);
    assert.ok(!trace.spans.some(hasError), 'a successful call has no error spans');
  });

  it('keeps a service name the operator sets over the one bin/ gives', async () => {
    const run = await runClient(['--json', '9'], {
      RPC_QUEUE: queue,
      ...tracingEnv(),
      OTEL_SERVICE_NAME: 'billing-fib-client',
    });
    assert.equal(run.code, 0, run.stderr);
    const trace = await jaeger.waitForTrace(JSON.parse(run.stdout).trace_id, (t) => t.spans.length >= 3);
    only(trace, 'billing-fib-client', 'call fib');
  });

  it('exports over OTLP gRPC too', async () => {
    const run = await tracedCall(['12'], {
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpGrpcEndpoint,
    });
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    const trace = await jaeger.waitForTrace(out.trace_id, bothServices);
    only(trace, 'fib-rpc-client', 'call fib');
    serverSpan(trace);
  });

  it('the server flushes its spans on SIGTERM', async () => {
    const flushQueue = admin.track(uniqueQueue('flush'));
    // Default 5 s batch delay: spans reach Jaeger before then only if shutdown flushes them.
    await using lone = await ServerProcess.start({ RPC_QUEUE: flushQueue, ...tracingEnv() });
    const run = await runClient(['--json', '7'], { RPC_QUEUE: flushQueue, ...tracingEnv() });
    const out = JSON.parse(run.stdout);
    const [code] = await lone.stop('SIGTERM');
    assert.equal(code, 0);
    const trace = await jaeger.waitForTrace(out.trace_id, (t) => serverSpans(t).length > 0, 3000);
    serverSpan(trace);
  });

  it('puts trace_id and span_id on every log line written inside a span', async () => {
    const run = await tracedCall(['21']);
    const out = JSON.parse(run.stdout);
    const line = await server.waitForLog((l) => l.msg === 'request settled' && l.trace_id === out.trace_id);
    assert.match(String(line.span_id), /^[0-9a-f]{16}$/);
  });
});

/** The trace of a call on `rpcQueue` that exits `exit` under --verbose, once it holds what `ready` wants. */
async function failedCallTrace(
  args: string[],
  rpcQueue: string,
  exit: number,
  ready: (t: JaegerTrace) => boolean,
): Promise<JaegerTrace> {
  const run = await runClient(['--verbose', ...args], { RPC_QUEUE: rpcQueue, ...tracingEnv() });
  assert.equal(run.code, exit);
  return jaeger.waitForTrace(verboseTraceId(run.stderr), ready);
}

function assertMarked(span: JaegerSpan, code: string): void {
  assert.ok(hasError(span) && hasException(span));
  assert.equal(tag(span, 'rpc.error.code'), code);
}

describe('failures mark the client span with error status and an exception event', () => {
  it('invalid input', async () => {
    const trace = await failedCallTrace(['-1'], queue, 2, (t) => t.spans.length >= 1);
    assertMarked(only(trace, 'fib-rpc-client', 'fib-rpc-client fib'), 'INVALID_REQUEST');
  });

  it('no responder', async () => {
    const trace = await failedCallTrace(['5'], uniqueQueue('absent'), 3, (t) => t.spans.length >= 2);
    assertMarked(only(trace, 'fib-rpc-client', 'call fib'), 'NO_RESPONDER');
  });

  it('timeout', async () => {
    const idle = await declareWorkQueue(admin.channel, admin.track(uniqueQueue('idle-traced')));
    const trace = await failedCallTrace(['--timeout', '300', '5'], idle, 4, (t) => t.spans.length >= 2);
    assertMarked(only(trace, 'fib-rpc-client', 'call fib'), 'TIMEOUT');
  });

  it('remote error: the client span and the server span are both marked', async () => {
    const strict = admin.track(uniqueQueue('strict-traced'));
    await using _small = await ServerProcess.start({
      RPC_QUEUE: strict,
      FIB_MAX_N: '10',
      ...tracingEnv({ OTEL_BSP_SCHEDULE_DELAY: '100' }),
    });
    const trace = await failedCallTrace(['11'], strict, 5, bothServices);
    assertMarked(only(trace, 'fib-rpc-client', 'call fib'), 'INVALID_REQUEST');
    assertMarked(serverSpan(trace), 'INVALID_REQUEST');
  });
});

describe('tracing without a collector, and switched off', () => {
  it('runs quietly and promptly when no collector is reachable', async () => {
    const started = Date.now();
    const run = await runClient(['30'], {
      RPC_QUEUE: queue,
      ...tracingEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1' }),
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '832040\n');
    assert.equal(run.stderr, '', 'no error spam');
    assert.ok(Date.now() - started < 5000, 'the failed export does not hold the process');
  });

  it('with OTEL_SDK_DISABLED=true no SDK is registered and no trace id is given', async () => {
    const run = await runClient(['--json', '30'], { RPC_QUEUE: queue, ...tracingEnv({ OTEL_SDK_DISABLED: 'true' }) });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(JSON.parse(run.stdout).trace_id, null);
    const telemetry = fileURLToPath(new URL('../../dist/telemetry/bootstrap.js', import.meta.url));
    const probe = (disabled: string) => {
      const child = spawn(
        process.execPath,
        [
          '--import',
          telemetry,
          '-e',
          'console.log(JSON.stringify(Object.keys(globalThis[Symbol.for("opentelemetry.js.api.1")] ?? {})))',
        ],
        { env: childEnv({ ...tracingEnv({ OTEL_SDK_DISABLED: disabled }) }), stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
      });
      return once(child, 'close').then(() => JSON.parse(out) as string[]);
    };
    assert.deepEqual(await probe('true'), [], 'nothing registered when disabled');
    assert.ok((await probe('false')).includes('trace'), 'a tracer provider is registered when enabled');
  });
});
