import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeadlineHeap, type Expiring } from '../../src/client/deadline-heap.ts';

interface Call extends Expiring {
  name: string;
}

const call = (name: string, inMs: number): Call => ({ name, expiresAt: performance.now() + inMs, heapIndex: -1 });
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('DeadlineHeap', () => {
  it('expires calls in deadline order, whatever the order they were added in, never before their deadline', async () => {
    const expired: string[] = [];
    const late: number[] = [];
    let done!: () => void;
    const all = new Promise<void>((resolve) => {
      done = resolve;
    });
    const heap = new DeadlineHeap<Call>((c) => {
      expired.push(c.name);
      late.push(performance.now() - c.expiresAt);
      if (expired.length === 5) done();
    });
    for (const [name, ms] of [
      ['c', 60],
      ['a', 20],
      ['e', 100],
      ['b', 40],
      ['d', 80],
    ] as const) {
      heap.add(call(name, ms));
    }
    await all;
    assert.deepEqual(expired, ['a', 'b', 'c', 'd', 'e']);
    assert.ok(
      late.every((ms) => ms >= 0),
      `expired early: ${late}`,
    );
    assert.equal(heap.size, 0);
  });

  it('a deleted call never expires, and the others still do', async () => {
    const expired: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const heap = new DeadlineHeap<Call>((c) => {
      expired.push(c.name);
      if (c.name === 'last') done();
    });
    const calls = Array.from({ length: 50 }, (_, i) => call(`c${i}`, 10 + (i % 7)));
    for (const c of calls) heap.add(c);
    heap.add(call('last', 40));
    for (const c of calls.filter((_, i) => i % 2 === 0)) heap.delete(c);
    await finished;
    assert.deepEqual([...expired].sort(), [...calls.filter((_, i) => i % 2 === 1).map((c) => c.name), 'last'].sort());
  });

  it('holds one timer while calls wait and none once they are all gone', () => {
    const before = timers();
    const heap = new DeadlineHeap<Call>(() => assert.fail('nothing should expire'));
    const calls = Array.from({ length: 1000 }, (_, i) => call(`c${i}`, 60_000 + i));
    for (const c of calls) heap.add(c);
    assert.equal(timers(), before + 1);
    for (const c of calls) heap.delete(c);
    assert.equal(heap.size, 0);
    assert.equal(timers(), before);
    // The next call (a lone caller's) keeps the process alive again while it waits.
    const next = call('next', 70_000);
    heap.add(next);
    assert.equal(timers(), before + 1);
    heap.delete(next);
    assert.equal(timers(), before);
    heap.clear();
  });

  it('keeps the heap order through arbitrary deletions', () => {
    const heap = new DeadlineHeap<Call>(() => {});
    const calls = Array.from({ length: 200 }, (_, i) => call(`c${i}`, 60_000 + ((i * 7919) % 200)));
    for (const c of calls) heap.add(c);
    for (const c of calls.filter((_, i) => i % 3 === 0)) heap.delete(c);
    // Every parent's deadline is no later than its children's.
    const inHeap = calls.filter((c) => c.heapIndex >= 0).sort((x, y) => x.heapIndex - y.heapIndex);
    assert.equal(inHeap.length, heap.size);
    inHeap.forEach((c, i) => {
      assert.equal(c.heapIndex, i);
      if (i > 0) assert.ok(inHeap[(i - 1) >> 1]!.expiresAt <= c.expiresAt);
    });
    heap.clear();
    assert.equal(heap.size, 0);
  });
});
