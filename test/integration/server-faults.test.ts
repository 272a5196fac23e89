import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RpcError } from '../../src/rpc/index.ts';
import { DIRECT_REPLY_TO, HEADER_DEADLINE } from '../../src/rpc/protocol.ts';
import type { Outcome, ServerObserver } from '../../src/rpc/index.ts';
import { BrokerAdmin, closesOnUnknownReplyNode, uniqueQueue } from '../support/broker.ts';
import { TcpProxy } from '../support/proxy.ts';
import { connectClient, startServer } from '../support/rpc.ts';

let admin: BrokerAdmin;
before(async () => {
  admin = await BrokerAdmin.open();
});
after(async () => {
  await admin.close();
});

/** Records what the server reports to its observer (what /metrics shows). */
class Spy implements ServerObserver {
  readonly outcomes: Partial<Record<Outcome, number>> = {};
  redeliveries = 0;
  unroutables = 0;
  disconnects = 0;
  #up = false;
  settled(_method: string, outcome: Outcome): void {
    this.outcomes[outcome] = (this.outcomes[outcome] ?? 0) + 1;
  }
  inFlight(): void {}
  connected(up: boolean): void {
    if (this.#up && !up) this.disconnects++;
    this.#up = up;
  }
  redelivered(): void {
    this.redeliveries++;
  }
  unroutable(): void {
    this.unroutables++;
  }
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** A direct reply-to address that really exists: the broker fills it in for our own channel. */
async function liveReplyTo(queue: string): Promise<string> {
  const channel = await admin.model.createChannel();
  try {
    await channel.consume(DIRECT_REPLY_TO, () => {}, { noAck: true });
    const probe = `${queue}.probe`;
    await channel.assertQueue(probe, { exclusive: true });
    channel.sendToQueue(probe, Buffer.from('x'), { replyTo: DIRECT_REPLY_TO });
    let msg = await channel.get(probe, { noAck: true });
    while (msg === false) {
      await sleep(10);
      msg = await channel.get(probe, { noAck: true });
    }
    return msg.properties.replyTo as string;
  } finally {
    await channel.close().catch(() => {});
  }
}

describe('server under faults (in-process, real broker)', () => {
  it('a half-open connection (bytes stop, nothing closes) is noticed within two heartbeats', async () => {
    const queue = admin.track(uniqueQueue('stall'));
    const server = await startServer(queue);
    server.handle('slow', async () => {
      await sleep(2500);
      return 'too late';
    });
    const proxy = await TcpProxy.start();
    const client = await connectClient(queue, { url: proxy.url(), heartbeatS: 1, timeoutMs: 20_000 });
    try {
      const call = client.call('slow', {});
      await sleep(300);
      const stalledAt = Date.now();
      proxy.stall();
      await assert.rejects(call, (err: unknown) => err instanceof RpcError && err.code === 'CONNECTION_LOST');
      const noticed = Date.now() - stalledAt;
      assert.ok(noticed >= 1000 && noticed <= 2000, `noticed after ${noticed} ms`);
    } finally {
      await client.close();
      await proxy.close();
      await server.stop();
    }
  });

  it('skips a request whose x-deadline has passed, acks it without a reply and counts it as expired', async () => {
    const queue = admin.track(uniqueQueue('expired'));
    const spy = new Spy();
    const server = await startServer(queue, { observer: spy });
    const client = await connectClient(queue);
    try {
      admin.channel.sendToQueue(queue, Buffer.from('{"n":10}'), {
        contentType: 'application/json',
        replyTo: 'nobody-listens-here',
        correlationId: 'too-late',
        headers: { [HEADER_DEADLINE]: Date.now() - 1000 },
      });
      await until(() => spy.outcomes.expired === 1);
      assert.equal(spy.unroutables, 0, 'no reply was published for it');
      assert.equal(await admin.messageCount(queue), 0);
      assert.equal(await admin.messageCount(`${queue}.dlq`), 0);
      assert.equal((await client.call('fib', { n: 10 })).result, '55');
    } finally {
      await client.close();
      await server.stop();
    }
  });

  it('dead-letters a request whose reply_to is a malformed direct reply-to address, and keeps its connection', async () => {
    const queue = admin.track(uniqueQueue('bad-reply-to'));
    const spy = new Spy();
    const server = await startServer(queue, { observer: spy });
    const client = await connectClient(queue);
    try {
      // Published as is, a reply to this makes RabbitMQ 3.10 close the server's connection (541).
      admin.channel.sendToQueue(queue, Buffer.from('{"n":10}'), {
        contentType: 'application/json',
        replyTo: 'amq.rabbitmq.reply-to.Zm9vYmFy.YmFy',
        correlationId: 'hostile',
      });
      await admin.waitForCount(`${queue}.dlq`, 1);
      assert.equal(spy.outcomes.dead_lettered, 1);
      assert.equal((await client.call('fib', { n: 11 })).result, '89');
      assert.equal(spy.disconnects, 0, 'the server never lost its connection');
    } finally {
      await client.close();
      await server.stop();
    }
  });

  it('counts a reply whose reply_to names no queue as unroutable; replies over direct reply-to are not returned', async () => {
    const queue = admin.track(uniqueQueue('unroutable'));
    const spy = new Spy();
    const server = await startServer(queue, { observer: spy });
    const client = await connectClient(queue);
    try {
      admin.channel.sendToQueue(queue, Buffer.from('{"n":10}'), {
        contentType: 'application/json',
        replyTo: `no-such-queue-${queue}`,
        correlationId: 'lost',
      });
      await until(() => spy.unroutables === 1);
      for (let n = 0; n < 20; n++) await client.call('fib', { n });
      await sleep(200);
      assert.equal(spy.outcomes.ok, 21);
      assert.equal(spy.unroutables, 1, 'delivered direct replies do not come back');
      assert.equal(await admin.messageCount(queue), 0);
    } finally {
      await client.close();
      await server.stop();
    }
  });

  it('answers a request that an earlier consumer took and never acked, and counts the redelivery', async () => {
    const queue = admin.track(uniqueQueue('redelivered'));
    const spy = new Spy();
    // Declared by a server that then leaves, so the queue has the server's arguments.
    await (await startServer(queue)).stop();
    const replyChannel = await admin.model.createChannel();
    const replies: string[] = [];
    await replyChannel.consume(DIRECT_REPLY_TO, (msg) => msg && replies.push(msg.content.toString()), {
      noAck: true,
    });
    replyChannel.sendToQueue(queue, Buffer.from('{"n":12}'), {
      contentType: 'application/json',
      replyTo: DIRECT_REPLY_TO,
      correlationId: 'once',
    });
    // A consumer that takes the request and dies without acking it.
    const doomed = await admin.model.createChannel();
    await doomed.prefetch(1);
    let taken = false;
    await doomed.consume(queue, (msg) => {
      taken = msg !== null;
    });
    await until(() => taken);
    await doomed.close();
    const server = await startServer(queue, { observer: spy });
    try {
      await until(() => replies.length === 1);
      assert.deepEqual(JSON.parse(replies[0] ?? ''), { result: '144' });
      assert.equal(spy.redeliveries, 1);
    } finally {
      await replyChannel.close();
      await server.stop();
    }
  });

  it('a request whose reply makes the broker drop the connection is dead-lettered on its second delivery, alone (RabbitMQ 3.x; 4.x drops that reply and keeps the connection)', async () => {
    const queue = admin.track(uniqueQueue('poison'));
    const spy = new Spy();
    const server = await startServer(queue, { observer: spy, queueType: 'quorum', deliveryLimit: 5, prefetch: 32 });
    const client = await connectClient(queue, { timeoutMs: 15_000 });
    const slow = await connectClient(queue, { timeoutMs: 15_000 });
    try {
      // Well formed, so it passes the server's check, but its pid names no node of this
      // broker: RabbitMQ 3.10 closes the publishing connection with 541 INTERNAL_ERROR.
      const real = await liveReplyTo(queue);
      const [pid = '', key = ''] = real.slice(`${DIRECT_REPLY_TO}.`.length).split('.');
      const term = Buffer.from(pid, 'base64');
      const nodeStart = term[2] === 118 ? 5 : 4;
      term[nodeStart + 6] = term[nodeStart + 6] === 0x31 ? 0x32 : 0x31; // "reply@<digits>": change a digit
      // Requests queued behind it are delivered in the same batch and share its first fall.
      server.handle('gate', async () => {
        await sleep(300);
        return 'open';
      });
      const gate = slow.call('gate', {});
      await until(() => server.inFlight === 1);
      admin.channel.sendToQueue(queue, Buffer.from('{"n":10}'), {
        contentType: 'application/json',
        replyTo: `${DIRECT_REPLY_TO}.${term.toString('base64')}.${key}`,
        correlationId: 'poison',
        messageId: 'poison',
      });
      const behind = Array.from({ length: 10 }, (_, n) => client.call('fib', { n }));
      const results = await Promise.all(behind);
      assert.deepEqual(
        results.map((r) => r.result),
        ['0', '1', '1', '2', '3', '5', '8', '13', '21', '34'],
      );
      if (!closesOnUnknownReplyNode(admin.version)) {
        // RabbitMQ 4 drops that reply and keeps the connection: the culprit is answered into
        // the void and acked like any other; nothing falls, nothing comes back.
        assert.equal((await gate).result, 'open');
        await until(() => spy.outcomes.ok === 12);
        assert.deepEqual(spy.outcomes, { ok: 12 });
        assert.equal(spy.disconnects, 0);
        assert.equal(spy.redeliveries, 0);
        assert.equal(await admin.messageCount(`${queue}.dlq`), 0);
        return;
      }
      await admin.waitForCount(`${queue}.dlq`, 1, 15_000);
      const dead = await admin.channel.get(`${queue}.dlq`, { noAck: true });
      assert.ok(dead && dead.properties.messageId === 'poison', 'only the culprit is dead-lettered');
      assert.equal(spy.disconnects, 1, 'the consuming connection fell once, on the first delivery');
      assert.equal((await client.call('fib', { n: 13 })).result, '233');
      // The slow request was in flight when the connection fell: redelivered, answered once.
      assert.equal((await gate).result, 'open');
      assert.ok(spy.redeliveries >= 2, 'the slow request and the culprit came back');
      assert.equal(server.ready, true);
    } finally {
      await client.close();
      await slow.close();
      await server.stop();
    }
  });
});
