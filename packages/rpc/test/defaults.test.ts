import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CLIENT_DEFAULTS,
  defineMethod,
  implement,
  type Logger,
  RpcServer,
  SERVER_DEFAULTS,
  silentLogger,
} from '../src/index.ts';
import { delivery, fakeOpener } from './support/fake-channel.ts';

const echo = defineMethod<{ say: string }, { said: string }>({
  name: 'echo',
  parse: (params) => params as { say: string },
});

describe('defaults, defined once', () => {
  it('new RpcServer({ url, methods }) declares and consumes with the documented defaults', async () => {
    const { open, connections } = fakeOpener();
    const server = new RpcServer(
      { url: 'amqp://fake:5672', log: silentLogger, methods: [implement(echo, ({ say }) => ({ said: say }))] },
      open,
    );
    await server.start();
    const channel = connections[0]?.consumer;
    assert.ok(channel, 'the server consumes');
    assert.equal(channel.prefetchCount, SERVER_DEFAULTS.prefetch);
    const work = channel.declared.find((d) => d.queue === SERVER_DEFAULTS.queue);
    assert.deepEqual(work?.options?.arguments, {
      'x-queue-type': 'classic',
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': `${SERVER_DEFAULTS.queue}.dlq`,
    });
    // The method given in the options is served.
    channel.deliver(
      delivery('{"say":"hi"}', {
        correlationId: 'c-1',
        replyTo: 'replies',
        contentType: 'application/json',
        type: 'echo',
      }),
    );
    assert.deepEqual(JSON.parse(channel.published[0]?.content.toString() ?? 'null'), { result: { said: 'hi' } });
    await server.stop();
  });

  it('an option given as undefined keeps its default; the stderr logger is used when none is given', async () => {
    const { open, connections } = fakeOpener();
    const warned: string[] = [];
    const original = console.warn;
    console.warn = (line: string) => void warned.push(line);
    try {
      const server = new RpcServer({ url: 'amqp://fake:5672', prefetch: undefined }, open);
      await server.start();
      assert.equal(connections[0]?.consumer?.prefetchCount, SERVER_DEFAULTS.prefetch);
      await server.stop();
    } finally {
      console.warn = original;
    }
    // Nothing went wrong, so the default logger said nothing.
    assert.deepEqual(warned, []);
  });

  it('the client and the server agree on what they share', () => {
    assert.equal(CLIENT_DEFAULTS.queue, SERVER_DEFAULTS.queue);
    assert.equal(CLIENT_DEFAULTS.serviceName, SERVER_DEFAULTS.serviceName);
    assert.equal(CLIENT_DEFAULTS.heartbeatS, SERVER_DEFAULTS.heartbeatS);
  });

  it('a pino logger is a Logger as it is, and so is a plain object of four methods', async () => {
    const { default: pino } = await import('pino');
    const fromPino: Logger = pino({ level: 'silent' });
    const lines: string[] = [];
    const plain: Logger = {
      debug: () => {},
      info: () => {},
      warn: (fields, message) => void lines.push(`${message} ${JSON.stringify(fields)}`),
      error: () => {},
    };
    fromPino.warn({ a: 1 }, 'ignored');
    plain.warn({ a: 1 }, 'seen');
    assert.deepEqual(lines, ['seen {"a":1}']);
  });
});
