import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { ClientProcess, ServerProcess, stopAll } from '../support/processes.ts';
import { figure, ms } from './support.ts';

const SCENARIO = '3 scale-down';

describe(SCENARIO, () => {
  it('3 servers under load, SIGTERM two at once: zero failed calls, both drain and exit 0', {
    timeout: 120_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('scale-down'));
    const env = { RPC_QUEUE: queue };
    await using servers = await ServerProcess.startMany(3, env);
    await using load = ClientProcess.start(
      ['--load', '--concurrency', '64', '--duration', '10s', '--spread', '--verify', '--json', '100000'],
      env,
    );
    await sleep(4000);
    const leaving = servers.slice(0, 2);
    const signalled = Date.now();
    const exits = await Promise.all(
      leaving.map(async (s) => {
        const [code, signal] = await s.stop('SIGTERM');
        return { code, signal, ms: Date.now() - signalled };
      }),
    );
    const { code, summary } = await load.summary();
    const servedByStayer = await servers[2]?.metric('rpc_server_requests_total', 'outcome="ok"');
    // Deliveries the broker had assigned to a leaver but not yet sent when it cancelled come
    // back flagged redelivered; none of them had been answered (no duplicates below).
    const redelivered = await servers[2]?.metric('rpc_server_redelivered_total');

    figure(t, SCENARIO, 'servers SIGTERMed at once', 2);
    figure(t, SCENARIO, 'exit codes', exits.map((e) => e.code).join(' / '));
    figure(t, SCENARIO, 'SIGTERM -> exit', `${exits.map((e) => ms(e.ms)).join(' / ')} ms`);
    figure(t, SCENARIO, 'calls / ok / wrong', `${summary.calls} / ${summary.ok} / ${summary.wrong}`);
    figure(t, SCENARIO, 'failed calls', summary.calls - summary.ok);
    figure(t, SCENARIO, 'answered by the remaining server', servedByStayer ?? 0);
    figure(t, SCENARIO, 'returned by the leavers unprocessed (redelivered)', redelivered ?? '-');
    figure(t, SCENARIO, 'answered twice (duplicates dropped)', summary.duplicates_dropped);

    for (const [i, exit] of exits.entries()) {
      assert.equal(exit.signal, null);
      assert.equal(exit.code, 0, leaving[i]?.stderr.slice(-2000));
      assert.ok(leaving[i]?.logs.some((l) => l.msg === 'drained: every in-flight request was answered'));
    }
    assert.equal(code, 0, load.stderr.slice(-2000));
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.ok, summary.calls);
    assert.equal(summary.wrong, 0);
    assert.ok(summary.calls > 100);
    assert.equal(summary.duplicates_dropped, 0, 'a leaver acked everything it answered');
    assert.equal(await admin.messageCount(queue), 0);
    assert.deepEqual(await stopAll(servers.slice(2)), [0]);
  });
});
