import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChannelModel } from 'amqplib';
import pino from 'pino';
import { BrokerConnection } from '../../../src/rpc/connection/broker-connection.ts';
import type { BrokerOptions, OpenedConnection } from '../../../src/rpc/connection/open-connection.ts';
import { ConnectionFailedError, QueueMismatchError } from '../../../src/rpc/index.ts';

/** A connection as far as BrokerConnection sees one: events and close(). */
class FakeModel extends EventEmitter {
  closed = false;
  async close(): Promise<void> {
    this.closed = true;
  }
}

const options = (extra: Partial<BrokerOptions> = {}): BrokerOptions => ({
  url: 'amqp://u:p@a:5672,amqp://u:p@b:5672,amqp://u:p@c:5672',
  heartbeatS: 5,
  connectTimeoutMs: 1000,
  connectionName: 'test',
  log: pino({ level: 'silent' }),
  initialDelayMs: 1,
  maxDelayMs: 5,
  ...extra,
});

/** An opener that answers from the address it starts with, unless told that one is down. */
function opener(down = new Set<number>()) {
  const startedAt: number[] = [];
  const models: FakeModel[] = [];
  const open = async (o: BrokerOptions, startAt = 0): Promise<OpenedConnection> => {
    startedAt.push(startAt);
    const urls = o.url.split(',');
    for (let tried = 0; tried < urls.length; tried++) {
      const index = (startAt + tried) % urls.length;
      if (down.has(index)) continue;
      const model = new FakeModel();
      models.push(model);
      return { model: model as unknown as ChannelModel, index, url: urls[index] as string };
    }
    throw new ConnectionFailedError('every address is down');
  };
  return { open, startedAt, models };
}

describe('BrokerConnection', () => {
  it('after losing a node, tries the next one first and runs the set-up again', async () => {
    const { open, startedAt, models } = opener();
    let setups = 0;
    let lost = 0;
    const connection = new BrokerConnection(
      options(),
      async () => {
        setups++;
      },
      () => lost++,
      open,
    );
    await connection.start();
    assert.equal(connection.address, 'amqp://a:5672');
    models[0]?.emit('close', new Error('node a died'));
    for (let i = 0; i < 100 && setups < 2; i++) await sleep(5);
    assert.equal(lost, 1);
    assert.equal(setups, 2);
    assert.deepEqual(startedAt, [0, 1]);
    assert.equal(connection.address, 'amqp://b:5672');
    await connection.close();
    assert.equal(models[1]?.closed, true);
  });

  it('keeps trying at start-up with startupTimeoutMs, and gives up when it is spent', async () => {
    const { open } = opener(new Set([0, 1, 2]));
    const connection = new BrokerConnection(
      options({ startupTimeoutMs: 50 }),
      async () => {},
      () => {},
      open,
    );
    await assert.rejects(
      connection.start(),
      (err: unknown) =>
        err instanceof ConnectionFailedError && /gave up on the broker after \d+ attempts/.test(err.message),
    );
  });

  it('one attempt without startupTimeoutMs; a set-up the broker refuses for good fails at once', async () => {
    const down = opener(new Set([0, 1, 2]));
    await assert.rejects(
      new BrokerConnection(
        options(),
        async () => {},
        () => {},
        down.open,
      ).start(),
      ConnectionFailedError,
    );
    assert.equal(down.startedAt.length, 1);
    const up = opener();
    const refused = new BrokerConnection(
      options({ startupTimeoutMs: 0 }),
      async () => {
        throw new QueueMismatchError(
          'q',
          "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received 'classic' but current is 'quorum'",
        );
      },
      () => {},
      up.open,
    );
    await assert.rejects(refused.start(), QueueMismatchError);
    assert.equal(up.startedAt.length, 1, 'not retried');
    assert.equal(up.models[0]?.closed, true, 'the refused connection is closed');
  });
});
