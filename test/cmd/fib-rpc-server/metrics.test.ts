import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createServerMetrics } from '../../../src/cmd/fib-rpc-server/metrics.ts';

const line = (text: string, name: string) =>
  text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(name)) ?? '';
const value = (text: string, series: string) => {
  const found = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(found, `no ${series} in\n${text}`);
  return Number(found.slice(series.length + 1));
};

describe('server metrics', () => {
  it('count requests by method and outcome, across scrapes', async () => {
    const { registry, observer } = createServerMetrics();
    observer.settled('fib', 'ok', 0.001);
    observer.settled('fib', 'ok', 0.002);
    observer.settled('_unknown', 'invalid', 0.0001);
    let text = await registry.metrics();
    assert.equal(value(text, 'rpc_server_requests_total{method="fib",outcome="ok"}'), 2);
    assert.equal(value(text, 'rpc_server_requests_total{method="_unknown",outcome="invalid"}'), 1);
    observer.settled('fib', 'ok', 0.001);
    text = await registry.metrics();
    assert.equal(value(text, 'rpc_server_requests_total{method="fib",outcome="ok"}'), 3);
  });

  it('time requests in a cumulative histogram with sum and count', async () => {
    const { registry, observer } = createServerMetrics();
    for (const seconds of [0.0004, 0.0005, 0.003, 0.2, 9]) observer.settled('fib', 'ok', seconds);
    const text = await registry.metrics();
    const bucket = (le: string) => value(text, `rpc_server_handler_duration_seconds_bucket{le="${le}",method="fib"}`);
    assert.equal(bucket('0.0005'), 2, 'a value on a bound counts in that bucket');
    assert.equal(bucket('0.001'), 2);
    assert.equal(bucket('0.005'), 3);
    assert.equal(bucket('0.25'), 4);
    assert.equal(bucket('2.5'), 4);
    assert.equal(bucket('+Inf'), 5);
    assert.equal(value(text, 'rpc_server_handler_duration_seconds_count{method="fib"}'), 5);
    assert.ok(Math.abs(value(text, 'rpc_server_handler_duration_seconds_sum{method="fib"}') - 9.2039) < 1e-9);
    assert.match(line(text, '# TYPE rpc_server_handler_duration_seconds'), /histogram/);
  });

  it('report the requests in flight at scrape time', async () => {
    const { registry, observer } = createServerMetrics();
    observer.inFlight(5);
    observer.inFlight(3);
    assert.equal(value(await registry.metrics(), 'rpc_server_in_flight'), 3);
    observer.inFlight(0);
    assert.equal(value(await registry.metrics(), 'rpc_server_in_flight'), 0);
  });

  it('count observer hooks that threw, by hook', async () => {
    const { registry, observer } = createServerMetrics();
    observer.hookFailed('settled');
    observer.hookFailed('settled');
    assert.equal(value(await registry.metrics(), 'rpc_server_hook_errors_total{hook="settled"}'), 2);
  });

  it('report whether the broker blocks the connection, 0 before it ever has', async () => {
    const { registry, observer } = createServerMetrics();
    assert.equal(value(await registry.metrics(), 'rpc_server_broker_blocked'), 0);
    observer.blocked(true, 'amqp://127.0.0.1:5672', 'low on memory');
    assert.equal(value(await registry.metrics(), 'rpc_server_broker_blocked'), 1);
    observer.blocked(false, 'amqp://127.0.0.1:5672');
    assert.equal(value(await registry.metrics(), 'rpc_server_broker_blocked'), 0);
  });
});
