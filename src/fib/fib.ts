/**
 * Exact Fibonacci numbers by fast doubling: O(log n) BigInt multiplications.
 *   F(2k)   = F(k) * (2*F(k+1) - F(k))
 *   F(2k+1) = F(k)^2 + F(k+1)^2
 */
export function fib(n: number): bigint {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`n must be a non-negative integer, got ${n}`);
  let a = 0n; // F(k)
  let b = 1n; // F(k+1)
  for (let bit = highestBit(n); bit > 0; bit >>>= 1) {
    const c = a * (2n * b - a);
    const d = a * a + b * b;
    if (n & bit) {
      a = d;
      b = c + d;
    } else {
      a = c;
      b = d;
    }
  }
  return a;
}

function highestBit(n: number): number {
  return n === 0 ? 0 : 2 ** Math.floor(Math.log2(n));
}

/**
 * Decimal fib(n) with a small LRU of large results: big n cost milliseconds (the decimal
 * conversion dominates), small n cost less than a cache lookup, so only large ones are kept.
 */
export class FibCache {
  readonly #entries = new Map<number, string>();
  readonly #maxEntries: number;
  readonly #minN: number;
  #bytes = 0;
  readonly #maxBytes: number;

  constructor({ maxEntries = 64, maxBytes = 8 * 1024 * 1024, minN = 10_000 } = {}) {
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
    this.#minN = minN;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(n: number): string {
    if (n < this.#minN) return fib(n).toString();
    const hit = this.#entries.get(n);
    if (hit !== undefined) {
      this.#entries.delete(n); // re-insert to mark as most recently used
      this.#entries.set(n, hit);
      return hit;
    }
    const value = fib(n).toString();
    if (value.length <= this.#maxBytes) {
      this.#entries.set(n, value);
      this.#bytes += value.length;
      this.#evict();
    }
    return value;
  }

  #evict(): void {
    while (this.#entries.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      const oldest = this.#entries.entries().next().value;
      if (oldest === undefined) return;
      this.#entries.delete(oldest[0]);
      this.#bytes -= oldest[1].length;
    }
  }
}
