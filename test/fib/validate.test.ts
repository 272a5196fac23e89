import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidRequestError } from '@fib-rpc/rpc';
import { parseN } from '../../src/fib/validate.ts';

describe('parseN', () => {
  it('accepts a bare integer, {"n": k}, and a string of digits', () => {
    assert.equal(parseN(30, 100), 30);
    assert.equal(parseN({ n: 30 }, 100), 30);
    assert.equal(parseN('30', 100), 30);
    assert.equal(parseN(0, 100), 0);
    assert.equal(parseN(100, 100), 100);
  });

  const rejected: Array<[unknown, RegExp]> = [
    [-1, /must not be negative/],
    ['-1', /must not be negative/],
    ['abc', /must be an integer, got "abc"/],
    [1.5, /must be an integer, got 1.5/],
    ['1.5', /must be an integer/],
    [101, /at most 100 \(FIB_MAX_N\), got 101/],
    [null, /got null/],
    [true, /got a boolean/],
    [[1], /got an array/],
    [{ m: 1 }, /params must be \{"n": <integer>\}/],
    [{ n: '1e3' }, /must be an integer/],
    [Number.NaN, /must be an integer/],
    ['', /must be an integer/],
  ];
  for (const [input, message] of rejected) {
    it(`rejects ${JSON.stringify(input)} with a clear message`, () => {
      assert.throws(
        () => parseN(input, 100),
        (err: unknown) => {
          assert.ok(err instanceof InvalidRequestError);
          assert.equal(err.code, 'INVALID_REQUEST');
          assert.equal(err.retryable, false);
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }
});
