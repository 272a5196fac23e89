import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel } from 'amqplib';
import { DIRECT_REPLY_TO } from '../../src/rpc/protocol.ts';
import { ReplyQuarantine } from '../../src/rpc/server/reply-quarantine.ts';
import { AMQP_URL, BrokerAdmin, closesOnUnknownReplyNode, silentLog, uniqueQueue } from '../support/broker.ts';

let admin: BrokerAdmin;
let replies: Channel;
let address = '';
const received: string[] = [];

before(async () => {
  admin = await BrokerAdmin.open();
  // A live direct reply-to address: ours, as the broker hands it out.
  replies = await admin.model.createChannel();
  await replies.consume(DIRECT_REPLY_TO, (msg) => msg && received.push(msg.content.toString()), { noAck: true });
  const probe = uniqueQueue('probe');
  await replies.assertQueue(probe, { exclusive: true });
  replies.sendToQueue(probe, Buffer.from('x'), { replyTo: DIRECT_REPLY_TO });
  for (let msg = await replies.get(probe, { noAck: true }); ; msg = await replies.get(probe, { noAck: true })) {
    if (msg) {
      address = String(msg.properties.replyTo);
      break;
    }
    await sleep(10);
  }
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

/** The same address with one digit of its node name changed: well formed, but no node's. */
function crafted(real: string): string {
  const [pid = '', key = ''] = real.slice(`${DIRECT_REPLY_TO}.`.length).split('.');
  const term = Buffer.from(pid, 'base64');
  const nodeStart = term[2] === 118 ? 5 : 4;
  term[nodeStart + 6] = term[nodeStart + 6] === 0x31 ? 0x32 : 0x31;
  return `${DIRECT_REPLY_TO}.${term.toString('base64')}.${key}`;
}

describe('reply quarantine', () => {
  it('confirms a reply that reached its caller, names the one that made the broker drop the connection, and goes on', async () => {
    const quarantine = new ReplyQuarantine(options());
    try {
      assert.equal(await quarantine.publish(address, Buffer.from('first'), {}), 'confirmed');
      const poison = await quarantine.publish(crafted(address), Buffer.from('poison'), {});
      // RabbitMQ 4 confirms and drops it instead, so there is nothing to refuse.
      assert.equal(poison, closesOnUnknownReplyNode(admin.version) ? 'refused' : 'confirmed');
      assert.equal(await quarantine.publish(address, Buffer.from('after'), {}), 'confirmed');
      await sleep(100);
      assert.deepEqual(received, ['first', 'after']);
    } finally {
      await quarantine.close();
    }
  });

  it('says "unknown" when it cannot reach the broker, so the caller replies the ordinary way', async () => {
    const quarantine = new ReplyQuarantine(options('amqp://guest:guest@127.0.0.1:1'));
    try {
      assert.equal(await quarantine.publish(address, Buffer.from('x'), {}), 'unknown');
    } finally {
      await quarantine.close();
    }
  });
});
