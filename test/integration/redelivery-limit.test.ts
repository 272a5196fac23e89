import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { TcpProxy } from '../support/proxy.ts';
import { sendRequest } from '../support/requests.ts';
import { cutEachDelivery, DOOMED, startDoomedServer } from '../support/rpc.ts';
import { waitFor } from '../support/wait.ts';

const until = (condition: () => boolean, what: string) => waitFor(condition, 15_000, what);

describe('the delivery limit on a classic queue', () => {
  it('dead-letters a request that keeps coming back, counting its redeliveries itself', async () => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('classic-limit'));
    await using proxy = await TcpProxy.start();
    // A request that takes its server down with it, every time: the handler never ends and
    // the server's connection is cut while it runs (a crash, as far as the broker can tell).
    await using server = await startDoomedServer(queue, proxy.url());
    sendRequest(admin.channel, queue, '{}', DOOMED);
    // The first delivery and two counted redeliveries run the handler; the third comes back
    // past the limit and is dead-lettered without running it.
    await cutEachDelivery(server, () => proxy.cut(), 3);
    await admin.waitForCount(`${queue}.dlq`, 1, 15_000);
    const dead = await admin.channel.get(`${queue}.dlq`, { noAck: true });
    assert.ok(dead, 'the request is in the dead-letter queue');
    assert.equal(dead.properties.messageId, 'doomed');
    assert.equal(dead.properties.headers?.['x-rpc-redeliveries'], 2);
    assert.equal(dead.properties.replyTo, 'nobody-listens-here', 'its properties survive the recounting');
    await until(() => server.ready, 'the server consuming again');
    assert.equal(await admin.messageCount(queue), 0, 'nothing left to come back');
    assert.equal(server.inFlight, 3, 'the handler ran three times, not a fourth');
  });
});
