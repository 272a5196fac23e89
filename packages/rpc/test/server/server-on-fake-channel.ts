import { Writable } from 'node:stream';
import pino from 'pino';
import { RpcServer, type RpcServerOptions } from '../../src/index.ts';
import { HEADER_DEADLINE } from '../../src/protocol.ts';
import { type FakeChannel, type FakeConnection, fakeOpener } from '../support/fake-channel.ts';

/** What a server under test logged, as parsed JSON lines. */
export type LogLines = Array<Record<string, unknown>>;

/** An RpcServer started on a fake connection, its work channel and what it logged. */
export interface ServerOnFake {
  server: RpcServer;
  channel: FakeChannel;
  connections: FakeConnection[];
  logs: LogLines;
}

/** Starts an RpcServer whose broker is a fake (test/support/fake-channel.ts): no broker needed. */
export async function serverOnFake(options: Partial<RpcServerOptions> = {}): Promise<ServerOnFake> {
  const logs: LogLines = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line));
      done();
    },
  });
  const { open, connections } = fakeOpener();
  const server = new RpcServer(
    {
      url: 'amqp://guest:guest@fake:5672',
      heartbeatS: 5,
      connectTimeoutMs: 1000,
      queue: 'work',
      deliveryLimit: 3,
      dlqMaxLength: 0,
      dlqTtlMs: 0,
      prefetch: 4,
      maxRequestBytes: 1024,
      drainTimeoutMs: 2000,
      defaultMethod: 'echo',
      log: pino({ level: 'debug' }, sink),
      ...options,
    },
    open,
  );
  await server.start();
  const channel = connections[0]?.consumer;
  if (channel === undefined) throw new Error('the server did not consume');
  return { server, channel, connections, logs };
}

/** The properties of a request a fib-rpc client sends to a plain reply queue. */
export function requestProperties(correlationId: string, extra: Record<string, unknown> = {}) {
  return {
    correlationId,
    replyTo: 'replies',
    contentType: 'application/json',
    type: 'echo',
    headers: { [HEADER_DEADLINE]: Date.now() + 10_000 },
    ...extra,
  };
}

/**
 * A well-formed direct reply-to address: `amq.rabbitmq.reply-to.<pid>.<key>`, the pid an
 * Erlang NEW_PID_EXT term (131, 88, a small UTF-8 atom for the node, ID, Serial, Creation).
 */
export function directReplyTo(): string {
  const node = Buffer.from('rabbit@fake');
  const term = Buffer.concat([Buffer.from([131, 88, 119, node.length]), node, Buffer.alloc(12, 1)]);
  return `amq.rabbitmq.reply-to.${term.toString('base64')}.a2V5`;
}

/** Lets promise callbacks and queued microtasks run (the server's async handler path). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
