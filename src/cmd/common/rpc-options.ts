import type { Logger, RpcClientOptions, RpcServerOptions } from '@fib-rpc/rpc';
import { type Config, configSchema } from './config.ts';

/** The name the programs give the core: its tracer, spans' rpc.system and connection names. */
export const SERVICE_NAME = 'fib-rpc';

/** The broker settings both programs share. */
function brokerOptions(config: Config) {
  return {
    url: config.amqp.url,
    heartbeatS: config.amqp.heartbeatS,
    connectTimeoutMs: config.amqp.connectTimeoutMs,
    tls: config.amqp.tls,
  };
}

/** The one place configuration becomes the server's options. */
export function serverOptions(
  config: Config,
  extra: Pick<RpcServerOptions, 'defaultMethod' | 'log' | 'observer'>,
): RpcServerOptions {
  return {
    ...brokerOptions(config),
    serviceName: SERVICE_NAME,
    startupTimeoutMs: config.amqp.startupTimeoutMs,
    queue: config.rpc.queue,
    queueType: config.rpc.queueType as RpcServerOptions['queueType'],
    deliveryLimit: config.rpc.deliveryLimit,
    dlqMaxLength: config.rpc.dlqMaxLength,
    dlqTtlMs: config.rpc.dlqTtlMs,
    prefetch: config.server.prefetch,
    maxRequestBytes: config.server.maxRequestBytes,
    drainTimeoutMs: config.server.drainTimeoutMs,
    // The server's warnings name the settings as operators set them: env vars.
    optionNames: { dlqMaxLength: configSchema.rpc.dlqMaxLength.env, dlqTtlMs: configSchema.rpc.dlqTtlMs.env },
    ...extra,
  };
}

/** The one place configuration becomes the client's options; the CLI's flags win. */
export function clientOptions(
  config: Config,
  log: Logger,
  overrides: Partial<Pick<RpcClientOptions, 'timeoutMs' | 'retries' | 'observer'>> = {},
): RpcClientOptions {
  return {
    ...brokerOptions(config),
    serviceName: SERVICE_NAME,
    queue: config.rpc.queue,
    timeoutMs: overrides.timeoutMs ?? config.rpc.timeoutMs,
    retries: overrides.retries ?? config.rpc.retries,
    maxInFlight: config.rpc.maxInFlight,
    // The core's undefined is one attempt; the client's 0 says the same.
    ...(config.client.startupTimeoutMs > 0 ? { startupTimeoutMs: config.client.startupTimeoutMs } : {}),
    log,
    ...(overrides.observer ? { observer: overrides.observer } : {}),
  };
}
