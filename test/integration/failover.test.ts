import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { freePort } from '../support/ports.ts';
import { TcpProxy } from '../support/proxy.ts';
import { connectClient, startServer } from '../support/rpc.ts';

/** Two "nodes" are two proxies to the one broker: enough to see which address a process uses. */
describe('several broker addresses', () => {
  it('connects to the first address that answers', async () => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('first-answering'));
    await using node = await TcpProxy.start();
    const nobody = await freePort();
    const urls = `amqp://guest:guest@127.0.0.1:${nobody},${node.url()}`;
    await using server = await startServer(queue, { url: urls });
    await using client = await connectClient(queue, { url: urls });
    assert.equal(server.address, `amqp://127.0.0.1:${node.port}`);
    assert.equal(client.address, `amqp://127.0.0.1:${node.port}`);
    assert.equal((await client.call('fib', { n: 10 })).result, '55');
  });

  it('fails over to the next address when the connection in use is lost, and calls go on', async () => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('failover'));
    await using a = await TcpProxy.start();
    await using b = await TcpProxy.start();
    const urls = `${a.url()},${b.url()}`;
    await using server = await startServer(queue, { url: urls });
    await using client = await connectClient(queue, { url: urls, retries: 5, retryBaseMs: 50 });
    assert.equal(server.address, `amqp://127.0.0.1:${a.port}`);
    assert.equal((await client.call('fib', { n: 20 })).result, '6765');

    // Node A goes away for good: its connections drop and it takes no new ones.
    a.stall();
    a.cut();
    const answered = await client.call('fib', { n: 30 });
    assert.equal(answered.result, '832040');
    assert.equal(client.address, `amqp://127.0.0.1:${b.port}`);
    for (let i = 0; i < 100 && server.address !== `amqp://127.0.0.1:${b.port}`; i++) await sleep(50);
    assert.equal(server.address, `amqp://127.0.0.1:${b.port}`);
    assert.equal(a.connections, 0);
    assert.ok(b.connections >= 2, `server and client on B, got ${b.connections} connections`);
  });
});
