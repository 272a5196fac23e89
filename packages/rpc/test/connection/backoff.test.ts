import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay } from '../../src/connection/backoff.ts';

describe('backoffDelay', () => {
  const policy = { initialMs: 100, maxMs: 2000 };

  it('doubles the ceiling per failed attempt up to the cap', () => {
    const ceiling = (attempt: number) => backoffDelay(attempt, policy, () => 1);
    assert.deepEqual([0, 1, 2, 3, 4, 5, 10].map(ceiling), [100, 200, 400, 800, 1600, 2000, 2000]);
  });

  it('waits anywhere from nothing to the ceiling (full jitter)', () => {
    assert.equal(
      backoffDelay(3, policy, () => 0),
      0,
    );
    assert.equal(
      backoffDelay(3, policy, () => 0.5),
      400,
    );
  });
});
