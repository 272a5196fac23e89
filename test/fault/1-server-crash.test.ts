import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { ClientProcess, metricSum, ServerProcess, stopAll, stopAllAtEnd } from '../support/processes.ts';
import { figure } from './support.ts';

const SCENARIO = '1 server crash';
const DURATION_S = 20;
const KILL_EVERY_MS = 4000;

describe(SCENARIO, () => {
  it(`3 servers, load at concurrency 64 for ${DURATION_S} s, a random server SIGKILLed every 4 s and replaced: every call answered, none wrong`, {
    timeout: 120_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('crash'));
    const env = { RPC_QUEUE: queue };
    const servers = await ServerProcess.startMany(3, env);
    // Victims leave `servers`; the end of the test stops every server it started.
    await using everyServer = stopAllAtEnd([...servers]);
    await using load = ClientProcess.start(
      ['--load', '--concurrency', '64', '--duration', `${DURATION_S}s`, '--spread', '--verify', '--json', '1000'],
      env,
    );
    let kills = 0;
    let redeliveredBeforeDeath = 0;
    const began = Date.now();
    for (let next = began + KILL_EVERY_MS; next < began + DURATION_S * 1000; next += KILL_EVERY_MS) {
      await sleep(next - Date.now());
      const [victim] = servers.splice(Math.floor(Math.random() * servers.length), 1);
      assert.ok(victim);
      // What it counted so far dies with it: read it first.
      redeliveredBeforeDeath += await victim.metric('rpc_server_redelivered_total').catch(() => 0);
      victim.child.kill('SIGKILL');
      await victim.exited;
      kills++;
      const fresh = await ServerProcess.start(env);
      servers.push(fresh);
      everyServer.push(fresh);
    }
    const { code, summary } = await load.summary();
    const redelivered = redeliveredBeforeDeath + (await metricSum(servers, 'rpc_server_redelivered_total'));
    figure(t, SCENARIO, 'servers SIGKILLed', kills);
    figure(t, SCENARIO, 'calls', summary.calls);
    figure(t, SCENARIO, 'ok', summary.ok);
    figure(t, SCENARIO, 'wrong', summary.wrong);
    figure(t, SCENARIO, 'errors', Object.keys(summary.errors).length ? JSON.stringify(summary.errors) : 0);
    figure(t, SCENARIO, 'redelivered requests answered', redelivered);
    figure(t, SCENARIO, 'duplicates dropped by the client', summary.duplicates_dropped);
    figure(t, SCENARIO, 'calls/s', summary.calls_per_s);
    figure(t, SCENARIO, 'p99 / max latency ms', `${summary.p99_ms} / ${summary.max_ms}`);

    assert.equal(kills, (DURATION_S * 1000) / KILL_EVERY_MS - 1);
    assert.equal(code, 0, load.stderr);
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.wrong, 0);
    assert.equal(summary.ok, summary.calls);
    assert.ok(summary.calls > 1000, `only ${summary.calls} calls`);
    assert.ok(redelivered > 0, 'killed servers held unacked requests that were redelivered');
    const codes = await stopAll(servers);
    assert.deepEqual(codes, [0, 0, 0]);
    assert.equal(await admin.messageCount(queue), 0);
    assert.equal(await admin.messageCount(`${queue}.dlq`), 0, 'nothing dead-lettered');
  });
});
