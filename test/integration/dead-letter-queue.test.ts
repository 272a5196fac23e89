import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { declaredWith } from '../support/queues.ts';
import { sendRequest } from '../support/requests.ts';
import { startServer } from '../support/rpc.ts';

let admin: BrokerAdmin;
before(async () => {
  admin = await BrokerAdmin.open();
});
after(async () => {
  await admin.close();
});

/** Requests nobody could be answered for (no reply_to): the server dead-letters each one. */
function sendUnanswerable(queue: string, count: number): void {
  for (let i = 0; i < count; i++) {
    sendRequest(admin.channel, queue, JSON.stringify({ n: i }));
  }
}

describe('the dead-letter queue <queue>.dlq', () => {
  it('is declared with x-max-length and x-message-ttl from RPC_DLQ_MAX_LENGTH and RPC_DLQ_TTL_MS', async () => {
    const queue = admin.track(uniqueQueue('dlq-args'));
    await (await startServer(queue, { dlqMaxLength: 1000, dlqTtlMs: 60_000 })).stop();
    const dlq = `${queue}.dlq`;
    assert.ok(
      await declaredWith(admin, dlq, {
        'x-queue-type': 'classic',
        'x-max-length': 1000,
        'x-message-ttl': 60_000,
      }),
    );
    assert.equal(await declaredWith(admin, dlq, { 'x-queue-type': 'classic' }), false, 'declared without limits');
  });

  it('leaves both out when they are 0 (no limit), since RabbitMQ would read 0 as "keep nothing"', async () => {
    const queue = admin.track(uniqueQueue('dlq-unbounded'));
    await (await startServer(queue, { dlqMaxLength: 0, dlqTtlMs: 0 })).stop();
    assert.ok(await declaredWith(admin, `${queue}.dlq`, { 'x-queue-type': 'classic' }));
  });

  it('keeps the newest dead letters up to its length and drops the oldest', async () => {
    const queue = admin.track(uniqueQueue('dlq-length'));
    await using _server = await startServer(queue, { dlqMaxLength: 3 });
    sendUnanswerable(queue, 5);
    await admin.waitForCount(queue, 0);
    await sleep(200);
    const dlq = `${queue}.dlq`;
    assert.equal(await admin.messageCount(dlq), 3);
    const kept: unknown[] = [];
    for (
      let msg = await admin.channel.get(dlq, { noAck: true });
      msg;
      msg = await admin.channel.get(dlq, { noAck: true })
    ) {
      kept.push(JSON.parse(msg.content.toString()).n);
    }
    assert.deepEqual(kept, [2, 3, 4]);
  });

  it('drops a dead letter once it is older than its TTL', async () => {
    const queue = admin.track(uniqueQueue('dlq-ttl'));
    await using _server = await startServer(queue, { dlqTtlMs: 1000 });
    sendUnanswerable(queue, 2);
    await admin.waitForCount(`${queue}.dlq`, 2);
    await admin.waitForCount(`${queue}.dlq`, 0, 5000);
  });

  it('works on quorum queues too', async () => {
    const queue = admin.track(uniqueQueue('dlq-quorum'));
    await using _server = await startServer(queue, { queueType: 'quorum', dlqMaxLength: 2, dlqTtlMs: 60_000 });
    sendUnanswerable(queue, 4);
    await admin.waitForCount(queue, 0);
    await admin.waitForCount(`${queue}.dlq`, 2);
    await sleep(200);
    assert.equal(await admin.messageCount(`${queue}.dlq`), 2);
  });

  it('made by the old version (no limits) is used as it is, with one warning, and dead letters still reach it', async () => {
    const queue = admin.track(uniqueQueue('dlq-old'));
    const dlq = `${queue}.dlq`;
    await admin.channel.assertQueue(dlq, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const warnings: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line)) });
    await using server = await startServer(queue, { queueType: 'quorum', dlqMaxLength: 2, dlqTtlMs: 60_000, log });
    assert.ok(server.ready);
    sendUnanswerable(queue, 4);
    await admin.waitForCount(queue, 0);
    // All four: the queue is not bounded to 2, it is the old one.
    await admin.waitForCount(dlq, 4);
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.equal(warnings[0]?.queue, dlq);
    assert.match(String(warnings[0]?.msg), /set_policy --apply-to queues .*'\{"max-length":2,"message-ttl":60000\}'/);
    await server.stop();
    assert.ok(await declaredWith(admin, dlq, { 'x-queue-type': 'quorum' }));
  });
});
