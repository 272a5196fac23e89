import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/cmd/common/config.ts';
import { startServer } from '../../src/cmd/fib-rpc-server/app.ts';
import { AMQP_URL, BrokerAdmin, silentLog, uniqueQueue } from '../support/broker.ts';
import { connectClient } from '../support/rpc.ts';

describe('the server program, built in-process', () => {
  it('serves fib, reports ready and counts in /metrics, and drains on stop', async () => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('app'));
    const config = loadConfig({ AMQP_URL, RPC_QUEUE: queue, HTTP_PORT: '0', FIB_MAX_N: '50' });
    await using app = await startServer(config, silentLog);
    const ready = await fetch(`http://127.0.0.1:${app.port}/readyz`);
    assert.equal(ready.status, 200);
    await using client = await connectClient(queue);
    assert.equal((await client.call('fib', { n: 50 })).result, '12586269025');
    await assert.rejects(client.call('fib', { n: 51 }), /at most 50 \(FIB_MAX_N\)/);
    const metrics = await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text();
    assert.match(metrics, /rpc_server_requests_total\{method="fib",outcome="ok"\} 1/);
    assert.match(metrics, /rpc_server_requests_total\{method="fib",outcome="invalid"\} 1/);
    assert.match(metrics, new RegExp(`rpc_server_broker_info\\{broker="${app.rpc.address}"\\} 1`));
    assert.deepEqual(await app.stop(), { drained: true, abandoned: 0 });
    await assert.rejects(fetch(`http://127.0.0.1:${app.port}/readyz`), 'HTTP is closed too');
  });
});
