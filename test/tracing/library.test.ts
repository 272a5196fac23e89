import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { Jaeger, parentOf, serviceOf, summarise, tag } from '../support/jaeger.ts';
import { childEnv } from '../support/processes.ts';

/**
 * @fib-rpc/rpc used as a library user would (test/tracing/library-user/: the built package by
 * its name, the OpenTelemetry SDK started with no instrumentation and nothing preloaded), the
 * client and the server in processes of their own, exporting to a real Jaeger. The core's own
 * injection and extraction of the W3C trace context in the request headers make it one trace.
 */
const dir = fileURLToPath(new URL('./library-user/', import.meta.url));
let jaeger: Jaeger;
let admin: BrokerAdmin;

before(async () => {
  jaeger = await Jaeger.start();
  admin = await BrokerAdmin.open();
});

after(async () => {
  await admin?.close();
  await jaeger?.stop();
});

function tracing(service: string, queue: string) {
  return childEnv({
    OTEL_SDK_DISABLED: undefined,
    OTEL_SERVICE_NAME: service,
    OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint,
    OTEL_TRACES_SAMPLER: 'always_on',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    QUEUE: queue,
  });
}

/** Runs `script` (no --conditions, no --import: the package's build, as installed) and collects its output. */
function start(script: string, env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [`${dir}${script}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d;
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d;
  });
  return { child, output: () => output };
}

async function within<T>(work: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what()} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('a library user’s client and server, SDK started, no instrumentation preloaded', () => {
  it('make one trace: the user’s span, the core’s call span, and the server’s handler span below it', async () => {
    const queue = admin.track(uniqueQueue('lib-traced'));
    const server = start('server.ts', tracing('library-server', queue));
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          server.child.stdout?.on('data', () => {
            if (server.output().includes('ready\n')) resolve();
          });
          server.child.once('exit', (code) => reject(new Error(`server exited ${code}: ${server.output()}`)));
        }),
        15_000,
        () => `ready from the server: ${server.output()}`,
      );
      const client = start('client.ts', tracing('library-client', queue));
      const [code] = (await within(once(client.child, 'exit'), 20_000, () => `client exit: ${client.output()}`)) as [
        number,
      ];
      assert.equal(code, 0, client.output());
      const out = JSON.parse(client.output().trim().split('\n').at(-1) ?? '{}') as {
        traceId: string;
        result: unknown;
      };
      assert.deepEqual(out.result, { said: 'hi' });

      const trace = await jaeger.waitForTrace(out.traceId, (t) =>
        t.spans.some((s) => serviceOf(t, s) === 'library-server'),
      );
      const tree = summarise(trace);
      const spans = trace.spans.map((s) => ({ service: serviceOf(trace, s), name: s.operationName, span: s }));
      assert.deepEqual(
        spans.map(({ service, name }) => `${service}:${name}`).sort(),
        ['library-client:call echo', 'library-client:checkout', 'library-server:handle echo'],
        `exactly these three spans (no amqplib instrumentation): ${JSON.stringify(tree, null, 1)}`,
      );
      const find = (name: string) => spans.find((s) => s.name === name)?.span;
      const checkout = find('checkout');
      const call = find('call echo');
      const handle = find('handle echo');
      assert.equal(parentOf(checkout!), undefined, 'the user’s span is the root');
      assert.equal(parentOf(call!), checkout!.spanID);
      assert.equal(parentOf(handle!), call!.spanID, 'the server continues the client’s call from the headers');
      assert.equal(tag(call!, 'span.kind'), 'client');
      assert.equal(
        tag(handle!, 'span.kind'),
        'server',
        'without the instrumentation the core’s own span is the RPC server span',
      );
      assert.equal(tag(handle!, 'rpc.method'), 'echo');
    } finally {
      server.child.kill('SIGTERM');
      await within(once(server.child, 'exit'), 10_000, () => 'server exit').catch(() => server.child.kill('SIGKILL'));
    }
  });
});
