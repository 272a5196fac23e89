import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { ClientProcess, metricSum, ServerProcess, stopAll } from '../support/processes.ts';
import { TcpProxy } from '../support/proxy.ts';
import { figure, ms } from './support.ts';

const SCENARIO = '4 cut connections';
const HEARTBEAT_S = 2;

/**
 * After 3 s of load, stalls the connections through `proxy` until `program` (behind it) says it
 * lost its connection, then lets it connect again: when each happened.
 */
async function stall(proxy: TcpProxy, program: ServerProcess | ClientProcess) {
  await sleep(3000);
  const stallAt = Date.now();
  proxy.stall();
  const noticed = await program.loggedAt('lost the broker connection, reconnecting', stallAt, 30_000);
  proxy.heal();
  const reconnected = await program.loggedAt('reconnected to the broker', stallAt, 15_000);
  return { stallAt, noticed, reconnected };
}

describe(SCENARIO, () => {
  it(`a server's connection cut, then stalled (half-open): it notices within ${2 * HEARTBEAT_S} s (heartbeat ${HEARTBEAT_S} s), reconnects, and its work is redelivered`, {
    timeout: 120_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('cut'));
    await using proxy = await TcpProxy.start();
    const env = { RPC_QUEUE: queue, AMQP_HEARTBEAT_S: String(HEARTBEAT_S) };
    await using behind = await ServerProcess.start({ ...env, AMQP_URL: proxy.url() });
    await using direct = await ServerProcess.start(env);
    await using load = ClientProcess.start(
      ['--load', '--concurrency', '32', '--duration', '20s', '--spread', '--verify', '--json', '20000'],
      env,
    );
    // 1. Cut: the socket closes under the server.
    await sleep(3000);
    const cutAt = Date.now();
    proxy.cut();
    const noticedCut = await behind.loggedAt('lost the broker connection, reconnecting', cutAt, 10_000);
    const reconnectedAfterCut = await behind.loggedAt('reconnected to the broker', cutAt, 10_000);

    // 2. Stall: bytes stop flowing both ways but nothing closes; only heartbeats can tell.
    const { stallAt, noticed: noticedStall, reconnected: reconnectedAfterStall } = await stall(proxy, behind);

    const { code, summary } = await load.summary();
    const redelivered = await metricSum([behind, direct], 'rpc_server_redelivered_total');

    figure(t, SCENARIO, 'cut -> server noticed', `${ms(noticedCut - cutAt)} ms`);
    figure(t, SCENARIO, 'cut -> server reconnected', `${ms(reconnectedAfterCut - cutAt)} ms`);
    figure(t, SCENARIO, `stall -> server noticed (heartbeat ${HEARTBEAT_S} s)`, `${ms(noticedStall - stallAt)} ms`);
    figure(t, SCENARIO, 'noticed stall -> reconnected', `${ms(reconnectedAfterStall - noticedStall)} ms`);
    figure(t, SCENARIO, 'redelivered requests answered', redelivered);
    figure(t, SCENARIO, 'calls / ok / wrong', `${summary.calls} / ${summary.ok} / ${summary.wrong}`);
    figure(
      t,
      SCENARIO,
      'longest stall seen by the client',
      `${Math.max(0, ...summary.stalls.map((s) => s.duration_ms))} ms`,
    );

    assert.equal(code, 0, load.stderr.slice(-2000));
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.ok, summary.calls);
    assert.equal(summary.wrong, 0);
    assert.ok(noticedCut - cutAt < 1000, 'a cut is noticed at once');
    assert.ok(reconnectedAfterCut - cutAt < 5000);
    assert.ok(
      noticedStall - stallAt <= 2 * HEARTBEAT_S * 1000 + 500,
      `stall noticed after ${noticedStall - stallAt} ms`,
    );
    assert.ok(reconnectedAfterStall - noticedStall < 5000);
    assert.ok(redelivered > 0, "the stalled server's unacked requests were redelivered");
    assert.equal(behind.child.exitCode, null);
    assert.deepEqual(await stopAll([behind, direct]), [0, 0]);
    assert.equal(await admin.messageCount(queue), 0);
  });

  it(`a client's connection stalled: in-flight calls fail as CONNECTION_LOST within ${2 * HEARTBEAT_S} s and --retries carries them over`, {
    timeout: 120_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('client-stall'));
    await using proxy = await TcpProxy.start();
    const env = { RPC_QUEUE: queue };
    await using _server = await ServerProcess.start(env);
    await using load = ClientProcess.start(
      [
        ...['--load', '--concurrency', '32', '--duration', '10s', '--spread', '--verify', '--json'],
        ...['--retries', '5', '1000'],
      ],
      { ...env, AMQP_URL: proxy.url(), AMQP_HEARTBEAT_S: String(HEARTBEAT_S), LOG_LEVEL: 'debug' },
    );
    const { stallAt, noticed, reconnected } = await stall(proxy, load);
    const { code, summary } = await load.summary();

    figure(t, SCENARIO, `client stall -> noticed (heartbeat ${HEARTBEAT_S} s)`, `${ms(noticed - stallAt)} ms`);
    figure(t, SCENARIO, 'client noticed -> reconnected', `${ms(reconnected - noticed)} ms`);
    figure(t, SCENARIO, 'client calls / ok / retried', `${summary.calls} / ${summary.ok} / ${summary.retried_calls}`);

    assert.equal(code, 0, load.stderr.slice(-2000));
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.ok, summary.calls);
    assert.equal(summary.wrong, 0);
    assert.ok(summary.retried_calls > 0, 'the calls in flight at the stall were retried');
    assert.ok(noticed - stallAt <= 2 * HEARTBEAT_S * 1000 + 500, `stall noticed after ${noticed - stallAt} ms`);
    assert.equal(await admin.messageCount(queue), 0);
  });
});
