import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ChannelModel } from 'amqplib';
import pino from 'pino';
import { CLOSE_TIMEOUT_MS } from '../../src/connection/bounded-close.ts';
import { BrokerConnection } from '../../src/connection/broker-connection.ts';
import type { BrokerOptions, OpenedConnection } from '../../src/connection/open-connection.ts';
import { ConnectionFailedError, QueueMismatchError } from '../../src/index.ts';

/** A connection as far as BrokerConnection sees one: events, close(), and amqplib's socket. */
class FakeModel extends EventEmitter {
  closed = false;
  /** close() never settles while set: a broker that does not answer the Close (a blocked one). */
  silent = false;
  readonly connection = {
    stream: {
      destroyed: false,
      destroy() {
        this.destroyed = true;
      },
    },
  };
  close(): Promise<void> {
    this.closed = true;
    return this.silent ? new Promise(() => {}) : Promise.resolve();
  }
  get socketDestroyed(): boolean {
    return this.connection.stream.destroyed;
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

/** A connection started on the first of its fake addresses, with nothing to set up. */
async function started(): Promise<{ connection: BrokerConnection; models: FakeModel[] }> {
  const { open, models } = opener();
  const connection = new BrokerConnection(
    options(),
    async () => {},
    () => {},
    open,
  );
  await connection.start();
  return { connection, models };
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

  it('close() ends a start-up wait at once: start() returns unconnected, not after the backoff', async () => {
    const { open, startedAt } = opener(new Set([0, 1, 2]));
    const connection = new BrokerConnection(
      // A pause of up to 11 days (full jitter: under 30 s once in 30,000 runs).
      options({ startupTimeoutMs: 0, initialDelayMs: 1e9, maxDelayMs: 1e9 }),
      async () => {},
      () => {},
      open,
    );
    const starting = connection.start();
    // The first attempt fails at once; by now start() is in its pause.
    await sleep(50);
    assert.equal(startedAt.length, 1);
    await connection.close();
    const stopWaiting = new AbortController();
    const backoff = sleep(30_000, 'still waiting', { signal: stopWaiting.signal }).catch(() => 'cancelled');
    assert.equal(await Promise.race([starting.then(() => 'returned'), backoff]), 'returned');
    stopWaiting.abort();
    assert.equal(connection.connected, false);
    assert.equal(startedAt.length, 1, 'no attempt after close()');
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

  it('knows while the broker blocks it, and tells; a lost connection is no longer blocked', async () => {
    const { connection, models } = await started();
    const heard: Array<[boolean, string | undefined]> = [];
    connection.watchBlocked((blocked, reason) => heard.push([blocked, reason]));
    assert.equal(connection.blocked, false);
    models[0]?.emit('blocked', 'low on memory');
    assert.equal(connection.blocked, true);
    assert.equal(connection.blockedReason, 'low on memory');
    models[0]?.emit('unblocked');
    assert.equal(connection.blocked, false);
    models[0]?.emit('blocked', 'low on disk');
    models[0]?.emit('close', new Error('gone'));
    assert.equal(connection.blocked, false);
    assert.deepEqual(heard, [
      [true, 'low on memory'],
      [false, undefined],
      [true, 'low on disk'],
      [false, undefined],
    ]);
    await connection.close();
  });

  it('closing while blocked drops the socket at once: the broker would not read the Close', async () => {
    const { connection, models } = await started();
    const model = models[0] as FakeModel;
    model.silent = true;
    model.emit('blocked', 'low on memory');
    await connection.close();
    assert.equal(model.closed, false, 'no Close sent');
    assert.equal(model.socketDestroyed, true);
    assert.equal(connection.blocked, false);
  });

  it('a close the broker never answers ends after CLOSE_TIMEOUT_MS with the socket destroyed', async () => {
    const { connection, models } = await started();
    const model = models[0] as FakeModel;
    model.silent = true;
    const began = performance.now();
    await connection.close();
    assert.ok(performance.now() - began >= CLOSE_TIMEOUT_MS - 50, 'it waited for the broker first');
    assert.equal(model.closed, true);
    assert.equal(model.socketDestroyed, true);
  });

  it('a close the broker answers destroys the socket too: amqplib only ends it', async () => {
    const { connection, models } = await started();
    await connection.close();
    assert.equal(models[0]?.closed, true);
    assert.equal(models[0]?.socketDestroyed, true);
  });

  it('does not wait for a channel close while blocked, and no longer than CLOSE_TIMEOUT_MS otherwise', async () => {
    const { connection, models } = await started();
    let closes = 0;
    const channel = {
      close: () => {
        closes++;
        return new Promise<void>(() => {});
      },
    } as unknown as Channel;
    models[0]?.emit('blocked', 'low on disk');
    await connection.closeChannel(channel);
    assert.equal(closes, 0);
    models[0]?.emit('unblocked');
    await connection.closeChannel(channel);
    assert.equal(closes, 1);
    await connection.close();
  });
});
