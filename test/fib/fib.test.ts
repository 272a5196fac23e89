import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FibCache, fib } from '../../src/fib/fib.ts';

/** The definition, for checking the fast method against. */
function fibByAddition(n: number): bigint {
  let a = 0n;
  let b = 1n;
  for (let i = 0; i < n; i++) [a, b] = [b, a + b];
  return a;
}

describe('fib', () => {
  it('matches the definition for every n up to 2000', () => {
    let a = 0n;
    let b = 1n;
    for (let n = 0; n <= 2000; n++) {
      assert.equal(fib(n), a, `fib(${n})`);
      [a, b] = [b, a + b];
    }
  });

  it('knows the classic values', () => {
    assert.equal(fib(0), 0n);
    assert.equal(fib(1), 1n);
    assert.equal(fib(2), 1n);
    assert.equal(fib(30), 832040n);
    assert.equal(fib(93), 12200160415121876738n);
  });

  it('gives the exact 209-digit fib(1000)', () => {
    const value = fib(1000).toString();
    assert.equal(value.length, 209);
    assert.equal(value, fibByAddition(1000).toString());
    assert.ok(
      value.startsWith(
        '434665576869374564356885276750406258025646605173717804024817290895365554179490518904038798400792551692959225930803226347752096896232398733224711616429964409065331879382989696499285160037044761377951668492288',
      ),
    );
  });

  it('is exact for large n (checked against the definition at n = 20000)', () => {
    assert.equal(fib(20_000), fibByAddition(20_000));
  });

  it('refuses negative and fractional n', () => {
    assert.throws(() => fib(-1), RangeError);
    assert.throws(() => fib(1.5), RangeError);
  });
});

describe('FibCache', () => {
  it('returns the same decimal string as a fresh computation, cached or not', () => {
    const cache = new FibCache({ minN: 100, maxEntries: 2 });
    assert.equal(cache.get(30), '832040');
    assert.equal(cache.size, 0, 'small n are not cached');
    const first = cache.get(5000);
    assert.equal(cache.get(5000), first);
    assert.equal(first, fib(5000).toString());
    assert.equal(cache.size, 1);
  });

  it('stays within its entry and byte bounds, evicting the least recently used', () => {
    const cache = new FibCache({ minN: 100, maxEntries: 2, maxBytes: 1_000_000 });
    cache.get(1000);
    cache.get(2000);
    cache.get(1000); // 1000 is now the most recent
    cache.get(3000); // evicts 2000
    assert.equal(cache.size, 2);
    const bytes = new FibCache({ minN: 100, maxEntries: 100, maxBytes: 1000 });
    for (let n = 1000; n < 1100; n++) bytes.get(n);
    assert.ok(bytes.size <= 4, `a 1000-byte budget holds at most four 209+-digit values, holds ${bytes.size}`);
  });
});
