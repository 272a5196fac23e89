/** A client as a library user writes one: one call inside a span of the user's own; prints the trace id and the result. */

import { RpcClient, silentLogger } from '@fib-rpc/rpc';
import { trace } from '@opentelemetry/api';
import { stopTracing } from './telemetry.ts';

const client = await RpcClient.connect({
  url: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  queue: process.env.QUEUE,
  log: silentLogger,
});
const tracer = trace.getTracer('library-user');
const out = await tracer.startActiveSpan('checkout', async (span) => {
  const { result } = await client.call('echo', { say: 'hi' });
  span.end();
  return { traceId: span.spanContext().traceId, result };
});
await client.close();
await stopTracing();
process.stdout.write(`${JSON.stringify(out)}\n`);
