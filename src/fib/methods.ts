import { defineMethod, type RpcServer } from '@fib-rpc/rpc';
import { FibCache } from './fib.ts';
import { parseN } from './validate.ts';

export interface FibParams {
  n: number;
}

/**
 * fib(n), as a decimal string: the numbers outgrow a double at n = 79, and JSON has no
 * BigInt. Pure, so idempotent: a retried call is safe.
 */
export const fib = defineMethod<FibParams, string>({
  name: 'fib',
  // The shape here; the server's own FIB_MAX_N is checked by its handler (registerFib).
  parse: (params) => ({ n: parseN(params, Number.POSITIVE_INFINITY) }),
});

export const FIB_METHOD = fib.name;

/** Implements fib on `server`: refuses n above `maxN` before any work, then computes (cached). */
export function registerFib(server: RpcServer, maxN: number, cache = new FibCache()): RpcServer {
  return server.implement(fib, ({ n }) => cache.get(parseN(n, maxN)));
}
