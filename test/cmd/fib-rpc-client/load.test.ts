import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RpcClient } from '@fib-rpc/rpc';
import { AbortedError, ConnectionLostError } from '@fib-rpc/rpc';
import { runLoad, STALL_MS } from '../../../src/cmd/fib-rpc-client/load.ts';

/** Just enough of an RpcClient for runLoad: answers fib(n) for small n after `delay(call)` ms. */
function fakeClient(delay: (call: number) => number, fail: (call: number) => boolean = () => false): RpcClient {
  const values = ['0', '1', '1', '2', '3', '5', '8', '13', '21', '34', '55'];
  let calls = 0;
  return {
    stats: { duplicatesDropped: 0, lateReplies: 0, unknownReplies: 0, returned: 0 },
    async call(_method: string, params: unknown) {
      const call = calls++;
      await sleep(delay(call));
      if (fail(call)) throw new ConnectionLostError();
      return { result: values[(params as { n: number }).n], correlationId: String(call), attempts: 1 };
    },
  } as unknown as RpcClient;
}

describe('load summary', () => {
  it('counts ok, errors by code and wrong answers', async () => {
    const summary = await runLoad(
      fakeClient(
        () => 1,
        (call) => call % 5 === 0,
      ),
      { concurrency: 2, count: 20, n: 10, spread: true, verify: true, timeoutMs: 1000, retries: 0 },
    );
    assert.equal(summary.calls, 20);
    assert.equal(summary.ok + (summary.errors.CONNECTION_LOST ?? 0) + summary.wrong, 20);
    assert.equal(summary.errors.CONNECTION_LOST, 4);
    assert.equal(summary.wrong, 0);
    assert.deepEqual(summary.stalls, []);
  });

  it('passes --retries and --retry-on-timeout to every call', async () => {
    const seen: unknown[] = [];
    const client = {
      stats: { duplicatesDropped: 0, lateReplies: 0, unknownReplies: 0, returned: 0 },
      async call(_method: string, _params: unknown, options: { retries?: number; retryOnTimeout?: boolean }) {
        seen.push({ retries: options.retries, retryOnTimeout: options.retryOnTimeout });
        return { result: '0', correlationId: String(seen.length), attempts: 1 };
      },
    } as unknown as RpcClient;
    const load = { concurrency: 1, count: 2, n: 0, spread: false, verify: true, timeoutMs: 1000, retries: 5 };
    await runLoad(client, { ...load, retryOnTimeout: true });
    await runLoad(client, load);
    assert.deepEqual(seen, [
      { retries: 5, retryOnTimeout: true },
      { retries: 5, retryOnTimeout: true },
      { retries: 5, retryOnTimeout: undefined },
      { retries: 5, retryOnTimeout: undefined },
    ]);
  });

  it('reports a period in which no call succeeded as a stall with its start, end and length', async () => {
    const before = Date.now();
    const summary = await runLoad(
      fakeClient((call) => (call === 3 ? STALL_MS + 200 : 1)),
      { concurrency: 1, count: 6, n: 5, spread: false, verify: true, timeoutMs: 5000, retries: 0 },
    );
    assert.equal(summary.ok, 6);
    assert.equal(summary.stalls.length, 1);
    const [stall] = summary.stalls;
    assert.ok(stall);
    assert.ok(stall.duration_ms >= STALL_MS + 150 && stall.duration_ms < STALL_MS + 1000, String(stall.duration_ms));
    assert.ok(Date.parse(stall.start) >= before);
    assert.equal(Date.parse(stall.end) - Date.parse(stall.start), stall.duration_ms);
  });

  it('stops on abort: no new calls, the ones in flight abandoned and counted apart from errors', async () => {
    // Every 4th call hangs until aborted, as a call to a stalled server would.
    let calls = 0;
    const client = {
      stats: { duplicatesDropped: 0, lateReplies: 0, unknownReplies: 0, returned: 0 },
      call(_method: string, _params: unknown, options: { signal?: AbortSignal }) {
        const call = calls++;
        return new Promise((resolve, reject) => {
          const signal = options.signal;
          signal?.addEventListener('abort', () => reject(new AbortedError(signal.reason)), { once: true });
          if (call % 4 !== 3) setTimeout(() => resolve({ result: '5', correlationId: String(call), attempts: 1 }), 1);
        });
      },
    } as unknown as RpcClient;
    const interrupt = new AbortController();
    setTimeout(() => interrupt.abort(new Error('interrupted by SIGTERM')), 100);
    const summary = await runLoad(client, {
      concurrency: 4,
      durationMs: 60_000,
      n: 5,
      spread: false,
      verify: true,
      timeoutMs: 60_000,
      retries: 0,
      signal: interrupt.signal,
    });
    assert.equal(summary.interrupted, true);
    assert.ok(summary.duration_s < 1, `${summary.duration_s} s`);
    assert.ok(summary.calls >= 3 && summary.ok === summary.calls, JSON.stringify(summary));
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.abandoned_calls, 4, 'all four callers were stuck at the abort');
  });

  it('is not interrupted without an abort', async () => {
    const summary = await runLoad(
      fakeClient(() => 0),
      {
        concurrency: 1,
        count: 3,
        n: 5,
        spread: false,
        verify: false,
        timeoutMs: 1000,
        retries: 0,
      },
    );
    assert.equal(summary.interrupted, false);
    assert.equal(summary.abandoned_calls, 0);
  });
});
