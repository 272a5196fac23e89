import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAttempt } from '../../src/client/attempt.ts';
import { CorrelationTable } from '../../src/client/correlation-table.ts';
import type { StrayReply } from '../../src/client/observer.ts';
import { AbortedError, ConnectionLostError, RemoteError, TimeoutError } from '../../src/index.ts';
import { replyMessage } from '../support/fake-channel.ts';

function table() {
  const strays: StrayReply[] = [];
  let settled = 0;
  const calls = new CorrelationTable(
    (id) => id.startsWith('me-'),
    () => settled++,
    (kind) => strays.push(kind),
  );
  const wait = (id: string, timeoutMs = 5000, signal?: AbortSignal) =>
    new Promise<unknown>((resolve, reject) => {
      calls.track(startAttempt(id, 'm', Buffer.from('{}'), timeoutMs, signal, undefined), timeoutMs, resolve, reject);
    });
  return { calls, strays, wait, settled: () => settled };
}

describe('CorrelationTable', () => {
  it('settles the call a reply names, with its result or its remote error', async () => {
    const { calls, wait, settled } = table();
    const ok = wait('me-1');
    const failed = wait('me-2');
    assert.equal(calls.size, 2);
    calls.reply(replyMessage('me-2', { error: { code: 'X', message: 'no', retryable: true, type: 'E' } }));
    calls.reply(replyMessage('me-1', { result: '55' }));
    assert.equal(await ok, '55');
    await assert.rejects(failed, (err: unknown) => err instanceof RemoteError && err.code === 'X' && err.retryable);
    assert.equal(calls.size, 0);
    assert.equal(settled(), 2, 'each settled call frees its slot once');
  });

  it('tells duplicate, late and foreign replies apart', async () => {
    const { calls, strays, wait } = table();
    const answered = wait('me-1');
    calls.reply(replyMessage('me-1', { result: 1 }));
    await answered;
    calls.reply(replyMessage('me-1', { result: 1 }));
    const timedOut = wait('me-2', 10);
    await assert.rejects(timedOut, TimeoutError);
    calls.reply(replyMessage('me-2', { result: 2 }));
    calls.reply(replyMessage('someone-else', { result: 3 }));
    calls.reply(replyMessage(undefined, { result: 4 }));
    assert.deepEqual(strays, ['duplicate', 'late', 'unknown', 'unknown']);
  });

  it('times calls out on one clock, each no sooner than its own deadline', async () => {
    const { wait } = table();
    const started = performance.now();
    const results = await Promise.allSettled([wait('me-a', 60), wait('me-b', 20), wait('me-c', 40)]);
    assert.ok(performance.now() - started >= 60);
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.ok((result as PromiseRejectedResult).reason instanceof TimeoutError);
    }
  });

  it('fails a call on abort, and every call at once on a lost connection', async () => {
    const { calls, wait, settled } = table();
    const abort = new AbortController();
    const aborted = wait('me-1', 5000, abort.signal);
    const lost = [wait('me-2'), wait('me-3')];
    abort.abort(new Error('user gave up'));
    await assert.rejects(aborted, (err: unknown) => err instanceof AbortedError && /user gave up/.test(err.message));
    calls.failAll(() => new ConnectionLostError());
    for (const call of lost) await assert.rejects(call, ConnectionLostError);
    assert.equal(settled(), 3);
    calls.clear();
    await sleep(1);
  });

  it('forgets an attempt that never went out without calling a later reply late', async () => {
    const { calls, strays } = table();
    const attempt = startAttempt('me-9', 'm', Buffer.from('{}'), 1000, undefined, undefined);
    calls.track(
      attempt,
      1000,
      () => {},
      () => {},
    );
    calls.untrack(attempt);
    calls.reply(replyMessage('me-9', { result: 1 }));
    assert.deepEqual(strays, ['duplicate']);
    calls.clear();
  });
});
