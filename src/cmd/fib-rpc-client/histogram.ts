/**
 * Latency histogram with bounded memory: log-linear buckets (64 per power of two, so
 * under 1.6% error) from 1 µs to ~1 hour. A million calls cost no more than ten.
 */
const SUB_BUCKETS = 64;
const MIN_US = 1;
const OCTAVES = 32;

export class LatencyHistogram {
  readonly #counts = new Float64Array(OCTAVES * SUB_BUCKETS);
  #count = 0;
  #max = 0;
  #sum = 0;

  record(ms: number): void {
    const us = Math.max(MIN_US, ms * 1000);
    const octave = Math.min(OCTAVES - 1, Math.floor(Math.log2(us)));
    const sub = Math.min(SUB_BUCKETS - 1, Math.floor((us / 2 ** octave - 1) * SUB_BUCKETS));
    this.#counts[octave * SUB_BUCKETS + sub]! += 1;
    this.#count++;
    this.#sum += ms;
    if (ms > this.#max) this.#max = ms;
  }

  get count(): number {
    return this.#count;
  }

  get max(): number {
    return this.#max;
  }

  get mean(): number {
    return this.#count === 0 ? 0 : this.#sum / this.#count;
  }

  /** The latency (ms) at quantile q in [0, 1]: the upper edge of the bucket holding it. */
  quantile(q: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) {
        const octave = Math.floor(i / SUB_BUCKETS);
        const sub = i % SUB_BUCKETS;
        const upperUs = 2 ** octave * (1 + (sub + 1) / SUB_BUCKETS);
        return Math.min(this.#max, upperUs / 1000);
      }
    }
    return this.#max;
  }
}
