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

/** An in-process fib server on `queue` with test-friendly defaults (`await using` stops it). */
export async function startServer(queue: string, options: Partial<RpcServerOptions> = {}): Promise<RpcServer> {
  const server = new RpcServer({
    serviceName: 'fib-rpc',
    url: AMQP_URL,
    heartbeatS: 5,
    connectTimeoutMs: 5000,
    queue,
    queueType: 'classic',
    deliveryLimit: 5,
    dlqMaxLength: 100_000,
    dlqTtlMs: 604_800_000,
    prefetch: 16,
    maxRequestBytes: 65536,
    drainTimeoutMs: 10_000,
    defaultMethod: 'fib',
    log: silentLog,
    ...options,
  });
  registerFib(server, 100_000);
  await server.start();
  return server;
}

export function connectClient(queue: string, options: Partial<RpcClientOptions> = {}): Promise<RpcClient> {
  return RpcClient.connect({
    serviceName: 'fib-rpc',
    url: AMQP_URL,
    heartbeatS: 5,
    connectTimeoutMs: 5000,
    queue,
    timeoutMs: 5000,
    retries: 0,
    maxInFlight: 1024,
    log: silentLog,
    ...options,
  });
}
