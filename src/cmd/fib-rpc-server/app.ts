import type { Server } from 'node:http';
import { RpcServer } from '@fib-rpc/rpc';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { FIB_METHOD, registerFib } from '../../fib/methods.ts';
import type { Config } from '../common/config.ts';
import { serverOptions } from '../common/rpc-options.ts';
import { boundPort, startHealthServer } from './health.ts';
import { createServerMetrics } from './metrics.ts';

/** The server program's parts, built in-process: what main.ts runs and tests start. */
export interface ServerApp extends AsyncDisposable {
  rpc: RpcServer;
  http: Server;
  /** The port /healthz, /readyz and /metrics answer on (config.http.port, or the one picked for 0). */
  port: number;
  registry: Registry;
  /** Drains the RPC server, then closes HTTP; once, however often it is called. */
  stop(): Promise<{ drained: boolean; abandoned: number }>;
}

/**
 * Builds the server and opens its HTTP endpoints, without touching the broker yet: until
 * rpc.start() connects, /healthz says 200 and /readyz 503, since waiting for the broker is
 * no reason to be restarted.
 */
export async function buildServer(config: Config, log: Logger): Promise<ServerApp> {
  const { registry, observer } = createServerMetrics();
  const rpc = new RpcServer(serverOptions(config, { defaultMethod: FIB_METHOD, log, observer }));
  registerFib(rpc, config.fib.maxN);
  const http = await startHealthServer(config.http.port, { ready: () => rpc.ready }, registry);
  let stopping: Promise<{ drained: boolean; abandoned: number }> | undefined;
  const stop = () => {
    stopping ??= rpc.stop().then(async (result) => {
      await new Promise((resolve) => http.close(resolve));
      return result;
    });
    return stopping;
  };
  return {
    rpc,
    http,
    port: boundPort(http),
    registry,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** Builds the server and starts it: connected, queues declared, consuming. */
export async function startServer(config: Config, log: Logger): Promise<ServerApp> {
  const app = await buildServer(config, log);
  try {
    await app.rpc.start();
  } catch (err) {
    await app.stop();
    throw err;
  }
  return app;
}
