import { setTimeout as sleep } from 'node:timers/promises';
import { RpcClient, type RpcClientOptions, RpcServer, type RpcServerOptions } from '@fib-rpc/rpc';
import { registerFib } from '../../src/fib/methods.ts';
import { AMQP_URL, silentLog } from './broker.ts';

/** A handler that answers `value` after `ms`: work that is still in flight when the test acts. */
export function answersAfter<T>(ms: number, value: T): () => Promise<T> {
  return async () => {
    await sleep(ms);
    return value;
  };
}

/**
 * An in-process fib server on `queue`, otherwise with the library's defaults but for a
 * shorter heartbeat and drain and a silent log (`await using` stops it).
 */
export async function startServer(queue: string, options: Partial<RpcServerOptions> = {}): Promise<RpcServer> {
  const server = new RpcServer({
    url: AMQP_URL,
    queue,
    heartbeatS: 5,
    drainTimeoutMs: 10_000,
    defaultMethod: 'fib',
    log: silentLog,
    ...options,
  });
  registerFib(server, 100_000);
  await server.start();
  return server;
}

/** A client of `queue` with the library's defaults but for a shorter heartbeat and timeout and a silent log. */
export function connectClient(queue: string, options: Partial<RpcClientOptions> = {}): Promise<RpcClient> {
  return RpcClient.connect({
    url: AMQP_URL,
    queue,
    heartbeatS: 5,
    timeoutMs: 5000,
    log: silentLog,
    ...options,
  });
}
