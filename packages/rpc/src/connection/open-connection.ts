import { readFileSync } from 'node:fs';
import amqp, { type ChannelModel } from 'amqplib';
import { ConnectionFailedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { patchAmqplib } from './amqplib-patches.ts';
import { describeBroker, parseBrokerUrls, withHeartbeat } from './broker-addresses.ts';

/** PEM files for amqps:// URLs: the CA that signed the broker's certificate, and a client certificate for mutual TLS. */
export interface TlsOptions {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** What RpcClient and RpcServer take about their broker connection; only `url` is needed. */
export interface ConnectionOptions {
  /** One AMQP URL, or several separated by commas: tried in order, the first that answers is used. */
  url: string;
  /** AMQP heartbeat in seconds. */
  heartbeatS?: number;
  /** How long one attempt to open the connection may take. */
  connectTimeoutMs?: number;
  tls?: TlsOptions;
  /** Reconnect backoff after a lost connection: first delay and cap. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Shown in the management UI; default `<serviceName>-client` or `-server`. */
  connectionName?: string;
  /** Where it logs (a pino logger will do); by default warnings and errors go to stderr. */
  log?: Logger;
}

export interface BrokerOptions {
  /** One AMQP URL, or several separated by commas: tried in order, the first that answers is used. */
  url: string;
  heartbeatS: number;
  connectTimeoutMs: number;
  tls?: TlsOptions;
  /** Shown in the management UI as the connection name. */
  connectionName: string;
  log: Logger;
  /** Reconnect backoff: the first delay (default 100 ms) and the cap (default 2 s). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /**
   * The first connection: undefined makes one attempt and fails at once (a one-shot client);
   * a number keeps trying with the reconnect backoff for that many ms, 0 for ever (a server).
   */
  startupTimeoutMs?: number;
}

/** An open connection and which of the setting's addresses it went to. */
export interface OpenedConnection {
  model: ChannelModel;
  /** Index into the setting's addresses. */
  index: number;
  url: string;
}

function socketOptions(options: BrokerOptions): Record<string, unknown> {
  const tls = options.tls ?? {};
  return {
    // Without it a lone request waits ~40 ms for Nagle + delayed ACK.
    noDelay: true,
    timeout: options.connectTimeoutMs,
    clientProperties: { connection_name: options.connectionName },
    ...(tls.caFile ? { ca: [readFileSync(tls.caFile)] } : {}),
    ...(tls.certFile ? { cert: readFileSync(tls.certFile) } : {}),
    ...(tls.keyFile ? { key: readFileSync(tls.keyFile) } : {}),
  };
}

/**
 * One plain connection, without any recovery: the first of the setting's addresses that
 * answers, starting at `startAt` and going round once. Fails with ConnectionFailedError
 * naming every address tried and why each failed.
 */
export async function openConnection(options: BrokerOptions, startAt = 0): Promise<OpenedConnection> {
  const urls = parseBrokerUrls(options.url);
  const failures: string[] = [];
  let lastError: unknown;
  for (let tried = 0; tried < urls.length; tried++) {
    const index = (startAt + tried) % urls.length;
    const url = urls[index] as string;
    try {
      const model = await amqp.connect(withHeartbeat(url, options.heartbeatS), socketOptions(options));
      patchAmqplib(model, options.log);
      return { model, index, url };
    } catch (err) {
      lastError = err;
      failures.push(`${describeBroker(url)}: ${reason(err)}`);
    }
  }
  const message =
    urls.length === 1
      ? `cannot connect to the broker at ${failures[0]}`
      : `cannot connect to any of the ${urls.length} brokers: ${failures.join('; ')}`;
  throw new ConnectionFailedError(urls.length === 0 ? 'no broker address given' : message, { cause: lastError });
}

export function reason(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
