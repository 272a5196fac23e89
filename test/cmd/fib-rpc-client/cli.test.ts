import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCli, parseDuration, UsageError } from '../../../src/cmd/fib-rpc-client/cli.ts';
import { LatencyHistogram } from '../../../src/cmd/fib-rpc-client/histogram.ts';

describe('client command line', () => {
  it('takes n as the positional argument, negative numbers included', () => {
    assert.equal(parseCli(['30']).n, '30');
    assert.equal(parseCli(['-1']).n, '-1');
    assert.equal(parseCli(['--json', '-5']).n, '-5');
    assert.equal(parseCli(['--json', '30']).json, true);
  });

  it('defaults a load to 10 s at concurrency 16 on fib(20)', () => {
    const cli = parseCli(['--load']);
    assert.equal(cli.load, true);
    assert.equal(cli.durationMs, 10_000);
    assert.equal(cli.concurrency, 16);
    assert.equal(cli.n, '20');
    assert.equal(parseCli(['--load', '--count', '100']).durationMs, undefined);
  });

  it('retries timeouts only when asked', () => {
    assert.equal(parseCli(['--retries', '5', '30']).retryOnTimeout, false);
    assert.equal(parseCli(['--retries', '5', '--retry-on-timeout', '30']).retryOnTimeout, true);
  });

  it('parses durations', () => {
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('3'), 3000);
    assert.throws(() => parseDuration('soon'), UsageError);
  });

  it('refuses unknown options and bad numbers with a usage error', () => {
    assert.throws(() => parseCli(['--frobnicate']), UsageError);
    assert.throws(() => parseCli(['--concurrency', '0', '--load']), /--concurrency must be an integer >= 1/);
    assert.throws(() => parseCli(['--timeout', 'x', '5']), /--timeout/);
    assert.throws(() => parseCli(['1', '2']), /expected one n/);
  });
});

describe('latency histogram', () => {
  it('reports quantiles within its bucket precision', () => {
    const h = new LatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.record(i / 10); // 0.1 .. 100 ms
    const close = (actual: number, expected: number) =>
      assert.ok(Math.abs(actual - expected) / expected < 0.02, `${actual} vs ${expected}`);
    close(h.quantile(0.5), 50);
    close(h.quantile(0.9), 90);
    close(h.quantile(0.99), 99);
    assert.equal(h.max, 100);
    assert.equal(h.count, 1000);
  });

  it('is empty-safe', () => {
    assert.equal(new LatencyHistogram().quantile(0.5), 0);
  });
});
