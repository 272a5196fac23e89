import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel } from 'amqplib';
import { ReplyQuarantine } from '../../packages/rpc/src/server/reply-quarantine.ts';
import { AMQP_URL, BrokerAdmin, closesOnUnknownReplyNode, silentLog } from '../support/broker.ts';
import { craftedReplyTo, replyAddress } from '../support/requests.ts';
import { scoped } from '../support/scoped.ts';

let admin: BrokerAdmin;
let replies: Channel;
let address = '';
const received: string[] = [];

before(async () => {
  admin = await BrokerAdmin.open();
  // A live direct reply-to address: ours, as the broker hands it out.
  replies = await admin.model.createChannel();
  address = await replyAddress(replies, (msg) => received.push(msg.content.toString()));
});
after(async () => {
  await replies.close().catch(() => {});
  await admin.close();
});

const options = (url = AMQP_URL) => ({
  url,
  heartbeatS: 5,
  connectTimeoutMs: 2000,
  connectionName: 'quarantine-test',
  log: silentLog,
});

const open = (url?: string) => {
  const quarantine = new ReplyQuarantine(options(url));
  return scoped(quarantine, () => quarantine.close());
};

describe('reply quarantine', () => {
  it('confirms a reply that reached its caller, names the one that made the broker drop the connection, and goes on', async () => {
    await using quarantine = open();
    assert.equal(await quarantine.publish(address, Buffer.from('first'), {}), 'confirmed');
    const poison = await quarantine.publish(craftedReplyTo(address), Buffer.from('poison'), {});
    // RabbitMQ 4 confirms and drops it instead, so there is nothing to refuse.
    assert.equal(poison, closesOnUnknownReplyNode(admin.version) ? 'refused' : 'confirmed');
    assert.equal(await quarantine.publish(address, Buffer.from('after'), {}), 'confirmed');
    await sleep(100);
    assert.deepEqual(received, ['first', 'after']);
  });

  it('says "unknown" when it cannot reach the broker, so the caller replies the ordinary way', async () => {
    await using quarantine = open('amqp://guest:guest@127.0.0.1:1');
    assert.equal(await quarantine.publish(address, Buffer.from('x'), {}), 'unknown');
  });
});
