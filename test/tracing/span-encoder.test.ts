/**
 * fib-rpc's OTLP encoder must write exactly what upstream's protobuf serialiser writes, for
 * every kind of span the SDK hands over: the collector sees no difference, only the CPU does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { SpanEncoder } from '../../src/telemetry/span-encoder.ts';

function finishedSpans(calls: number): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': 'fib-rpc-server',
      'host.name': 'nœud-1',
      'process.pid': 4242,
      'process.command_args': ['node', 'bin/fib-rpc-server.js'],
    }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const amqp = provider.getTracer('@opentelemetry/instrumentation-amqplib', '0.71.0');
  const rpc = provider.getTracer('fib-rpc-server');
  for (let i = 0; i < calls; i++) {
    const consume = amqp.startSpan('rpc_queue process', {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.protocol_version': '0.9.1',
        'messaging.url': 'amqp://guest:***@127.0.0.1:5672',
        'server.port': 5672,
        'messaging.system': 'rabbitmq',
        'messaging.destination': '',
        'messaging.conversation_id': `c${i}`,
        'x.double': 0.25 + i,
        'x.negative': -3 - i,
        'x.large': 2 ** 40 + i,
        'x.flag': i % 2 === 0,
        'x.long': 'long value '.repeat(40),
      },
    });
    const inside = trace.setSpan(context.active(), consume);
    const handle = rpc.startSpan(
      'handle fib',
      { attributes: { 'rpc.method': 'fib', 'rpc.service': 'rpc_queue', 'fib.n': [i, i + 1], ünïcode: 'é✓' } },
      inside,
    );
    if (i % 3 === 0) {
      handle.recordException(new Error(`n too large: ${i}`));
      handle.setStatus({ code: SpanStatusCode.ERROR, message: 'n too large' });
      handle.addLink({ context: consume.spanContext(), attributes: { 'link.n': i } });
    }
    handle.end();
    consume.end();
  }
  return exporter.getFinishedSpans();
}

describe('SpanEncoder', () => {
  it('writes the bytes upstream writes, batch after batch (its caches change nothing)', () => {
    const encoder = new SpanEncoder();
    // Past the per-key value cache (64 values), so both the cached and the plain path run.
    for (const spans of [finishedSpans(5), finishedSpans(200), finishedSpans(200)]) {
      const upstream = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans) as Uint8Array);
      const ours = Buffer.from(encoder.encode(spans));
      assert.equal(ours.length, upstream.length);
      assert.ok(ours.equals(upstream), 'same bytes');
    }
  });

  it('hands out a request of its own: encoding the next batch does not change it', () => {
    const encoder = new SpanEncoder();
    const first = encoder.encode(finishedSpans(3));
    const copy = Buffer.from(first);
    encoder.encode(finishedSpans(50));
    assert.ok(Buffer.from(first).equals(copy));
  });

  it('encodes an empty batch as an empty request', () => {
    assert.equal(new SpanEncoder().encode([]).length, 0);
  });
});
