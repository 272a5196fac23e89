import type { RpcServer } from '../rpc/server/rpc-server.ts';
import { FibCache } from './fib.ts';
import { parseN } from './validate.ts';

export const FIB_METHOD = 'fib';

/** Registers the fib method: validate n before any work, then compute (pure, so idempotent). */
export function registerFib(server: RpcServer, maxN: number, cache = new FibCache()): RpcServer {
  return server.handle(FIB_METHOD, (params) => cache.get(parseN(params, maxN)));
}
