import { setTimeout as sleep } from 'node:timers/promises';
import { RpcClient, type RpcClientOptions, RpcServer, type RpcServerOptions } from '@fib-rpc/rpc';
import { registerFib } from '../../src/fib/methods.ts';
import { AMQP_URL, silentLog } from './broker.ts';
import { waitFor } from './wait.ts';

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

/** The request of the redelivery-limit scenarios: its handler never ends (see startDoomedServer). */
export const DOOMED = { type: 'doom', replyTo: 'nobody-listens-here', correlationId: 'doomed', messageId: 'doomed' };

/**
 * A server on classic queue `queue` (delivery limit 2) reached at `url` (a proxy's), whose
 * `doom` handler never ends: a request that takes its server down with it every time.
 */
export async function startDoomedServer(queue: string, url: string): Promise<RpcServer> {
  const server = await startServer(queue, {
    url,
    queueType: 'classic',
    deliveryLimit: 2,
    drainTimeoutMs: 200,
    initialDelayMs: 20,
    maxDelayMs: 100,
  });
  server.handle('doom', () => new Promise(() => {}));
  return server;
}

/** Cuts the server's connection while each of the doomed request's `deliveries` is in the handler. */
export async function cutEachDelivery(server: RpcServer, cut: () => void, deliveries: number): Promise<void> {
  for (let falls = 1; falls <= deliveries; falls++) {
    await waitFor(() => server.inFlight === falls, 15_000, `delivery ${falls} in the handler`);
    cut();
  }
}
