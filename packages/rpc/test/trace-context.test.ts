import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { isTracingSuppressed, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Message } from 'amqplib';
import { requestContext, requestOptions, requestTrace } from '../src/protocol.ts';
import { untracedPublish } from '../src/spans.ts';

/** A context whose active span is `traceId`/`spanId`, as a tracer (or instrumentation-amqplib) would make. */
const withSpan = (traceId: string, spanId: string): Context =>
  trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: TraceFlags.SAMPLED } satisfies SpanContext);

const request = (headers: Record<string, unknown> | undefined) => ({ properties: { headers } }) as unknown as Message;

const CALL = { trace: '4bf92f3577b34da6a3ce929d0e0e4736', span: '00f067aa0ba902b7' };
const PROCESS = { span: 'b7ad6b7169203331' };

describe('trace context in the request headers (the W3C propagator, as the SDK registers it)', () => {
  before(() => propagation.setGlobalPropagator(new W3CTraceContextPropagator()));
  after(() => propagation.disable());

  it('the client injects the call span as traceparent; without a trace it adds nothing', () => {
    const traced = requestOptions(
      { id: 'c-1', method: 'fib', deadline: 1, traceContext: withSpan(CALL.trace, CALL.span) },
      100,
    );
    assert.equal(traced.headers?.traceparent, `00-${CALL.trace}-${CALL.span}-01`);
    const untraced = requestOptions({ id: 'c-1', method: 'fib', deadline: 1, traceContext: undefined }, 100);
    assert.deepEqual(Object.keys(untraced.headers ?? {}).sort(), ['x-deadline', 'x-rpc-version']);
  });

  it('the server continues the headers’ trace when nothing is active (no instrumentation)', () => {
    const parent = requestContext(request({ traceparent: `00-${CALL.trace}-${CALL.span}-01` }), ROOT_CONTEXT);
    assert.deepEqual(
      { traceId: trace.getSpanContext(parent)?.traceId, spanId: trace.getSpanContext(parent)?.spanId },
      { traceId: CALL.trace, spanId: CALL.span },
    );
    assert.equal(trace.getSpanContext(parent)?.isRemote, true);
  });

  it('the server keeps an active span that already continues that trace (instrumentation-amqplib’s process span)', () => {
    const active = withSpan(CALL.trace, PROCESS.span);
    const parent = requestContext(request({ traceparent: `00-${CALL.trace}-${CALL.span}-01` }), active);
    assert.equal(parent, active, 'no second parent: the handler hangs below the process span');
  });

  it('the server takes the headers over an unrelated active span (one active when the server started)', () => {
    const unrelated = withSpan('11111111111111111111111111111111', '2222222222222222');
    const parent = requestContext(request({ traceparent: `00-${CALL.trace}-${CALL.span}-01` }), unrelated);
    assert.equal(trace.getSpanContext(parent)?.traceId, CALL.trace);
  });

  it('a request without a trace, or with a malformed traceparent, leaves the active context as it is', () => {
    const active = withSpan(CALL.trace, PROCESS.span);
    assert.equal(requestContext(request(undefined), active), active);
    assert.equal(requestContext(request({ 'x-rpc-version': 1 }), ROOT_CONTEXT), ROOT_CONTEXT);
    assert.equal(requestContext(request({ traceparent: 'not-a-traceparent' }), ROOT_CONTEXT), ROOT_CONTEXT);
  });

  it('the server enriches the active span only when it records and continues the headers’ trace', () => {
    const headers = request({ traceparent: `00-${CALL.trace}-${CALL.span}-01` });
    const recording = {
      spanContext: () => ({ traceId: CALL.trace, spanId: PROCESS.span, traceFlags: TraceFlags.SAMPLED }),
      isRecording: () => true,
    } as unknown as Span;
    const active = trace.setSpan(ROOT_CONTEXT, recording);
    assert.equal(requestTrace(headers, active).consumer, recording, 'instrumentation-amqplib’s process span');
    assert.equal(requestTrace(headers, active).parent, active);
    assert.equal(requestTrace(headers, withSpan(CALL.trace, PROCESS.span)).consumer, undefined, 'not recording');
    const unrelated = trace.setSpan(ROOT_CONTEXT, {
      spanContext: () => ({ traceId: '11111111111111111111111111111111', spanId: '2222222222222222', traceFlags: 1 }),
      isRecording: () => true,
    } as unknown as Span);
    assert.equal(requestTrace(headers, unrelated).consumer, undefined, 'another trace');
    assert.equal(requestTrace(request({ 'x-rpc-version': 1 }), active).consumer, undefined, 'an untraced request');
  });

  it('a traced publish runs with the SDK’s own tracing suppression, under which the propagator injects nothing', () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const seen: { suppressed: boolean; injected: Record<string, unknown> }[] = [];
      const channel = {
        publish(exchange: string, routingKey: string) {
          const injected: Record<string, unknown> = {};
          propagation.inject(context.active(), injected);
          seen.push({ suppressed: isTracingSuppressed(context.active()), injected });
          return `${exchange}/${routingKey}`;
        },
      };
      const returned = untracedPublish(withSpan(CALL.trace, CALL.span), channel, '', 'q');
      assert.equal(returned, '/q');
      assert.deepEqual(seen, [{ suppressed: true, injected: {} }]);
      assert.equal(isTracingSuppressed(context.active()), false, 'only the publish runs suppressed');
    } finally {
      context.disable();
    }
  });
});
