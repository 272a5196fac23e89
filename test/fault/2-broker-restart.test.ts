import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { EXIT } from '../../src/cmd/fib-rpc-client/exit-codes.ts';
import type { LoadSummary } from '../../src/cmd/fib-rpc-client/load.ts';
import { AMQP_URL, BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { cannotControlBroker, ensureBrokerRunning, rabbitmqctl } from '../support/broker-control.ts';
import { logTime } from '../support/logs.ts';
import { ClientProcess, ServerProcess, stopAll } from '../support/processes.ts';
import { figure, ms } from './support.ts';

const SCENARIO = '2 broker restart';
const DOWN_MS = 3000;
/**
 * How long the loads go on after the broker's return: well past the 5 s the recovery may
 * take, so that a slower one is measured (and fails the test with its figure) rather than
 * cut off. The test then ends them (SIGTERM): a load of fixed length could end before the
 * broker even stops, since stop_app alone has taken 25 s on a busy machine.
 */
const RUN_ON_MS = 12_000;
/** How long stop_app may take to close the clients' connections (25 s seen on a busy machine). */
const STOP_APP_BOUND_MS = 60_000;

const skip = await cannotControlBroker();

/** The first moment a fresh AMQP connection succeeds: the broker is back as a client sees it. */
async function brokerBackAt(): Promise<number> {
  for (;;) {
    try {
      const model = await amqp.connect(AMQP_URL);
      const at = Date.now();
      await model.close().catch(() => {});
      return at;
    } catch {
      await sleep(50);
    }
  }
}

/**
 * How long after `backAt` a load's first call succeeded: the end of its stall that spans
 * `lostAt` (no call succeeds while its connection is gone). Negative when the client got back
 * in before the test's own probe saw the broker (it polls every 50 ms, on a loaded machine).
 */
function recoveryAfter(summary: LoadSummary, lostAt: number | undefined, backAt: number): number | undefined {
  if (lostAt === undefined) return undefined;
  const stall = summary.stalls.find((s) => Date.parse(s.start) <= lostAt && Date.parse(s.end) >= lostAt);
  return stall === undefined ? undefined : Date.parse(stall.end) - backAt;
}

describe(SCENARIO, { skip: skip ?? false }, () => {
  it('in-flight calls fail fast as retryable; servers and clients reconnect by themselves within 5 s; with --retries every call succeeds', {
    timeout: 180_000,
  }, async (t) => {
    let admin = await BrokerAdmin.open();
    // Runs after the processes below are gone: whatever happened, leave the shared broker
    // running for whoever comes next, then clean up through the admin that outlived the restart.
    t.after(async () => {
      await ensureBrokerRunning();
      await admin.close().catch(() => {});
    });
    /** The restart closes the admin connection too: open a fresh one that still cleans up. */
    const reopenAdmin = async (queue: string) => {
      admin.model.on('error', () => {});
      admin = await BrokerAdmin.open();
      admin.track(queue);
      return admin;
    };
    const queue = admin.track(uniqueQueue('restart'));
    const env = { RPC_QUEUE: queue };
    await using servers = await ServerProcess.startMany(2, env);
    const clientEnv = { ...env, LOG_LEVEL: 'debug' };
    const common = ['--load', '--concurrency', '32', '--duration', '600s', '--spread', '--verify', '--json'];
    // --timeout covers the outage (and the servers' pause through stop_app), so calls made
    // while the broker is away wait for it.
    const timeout = String(STOP_APP_BOUND_MS + 20_000);
    await using retrying = ClientProcess.start([...common, '--retries', '10', '--timeout', timeout, '500'], clientEnv);
    await using plain = ClientProcess.start([...common, '--retries', '0', '--timeout', timeout, '500'], clientEnv);
    await sleep(4000);
    admin.model.on('error', () => {});
    // The servers are paused across the broker's stop, so that calls are surely in flight when
    // it closes the clients' connections. Running, they may all be answered first: 3.10's
    // stop_app can flush the last replies with the Close in one read, and then no call is
    // left to fail (seen once in five runs).
    for (const s of servers) s.child.kill('SIGSTOP');
    const stopAt = Date.now();
    const stopping = rabbitmqctl('stop_app');
    try {
      await Promise.all(
        [retrying, plain].map((c) => c.loggedAt(/lost the broker connection/, stopAt, STOP_APP_BOUND_MS)),
      );
    } finally {
      for (const s of servers) s.child.kill('SIGCONT');
    }
    await stopping;
    const stoppedAt = Date.now();
    await sleep(DOWN_MS);
    const back = brokerBackAt();
    await rabbitmqctl('start_app');
    const backAt = await back;
    const fresh = await reopenAdmin(queue);

    // Give each server the time it needs to say it reconnected, then measure from the broker's return.
    const serverRecovery = await Promise.all(
      servers.map(async (s) => {
        const at = await s.loggedAt('reconnected to the broker', stopAt, 10_000).catch(() => undefined);
        return at === undefined ? undefined : at - backAt;
      }),
    );
    await sleep(Math.max(0, backAt + RUN_ON_MS - Date.now()));
    for (const client of [retrying, plain]) client.child.kill('SIGTERM');
    const [a, b] = await Promise.all([retrying.summary(), plain.summary()]);
    const clientLost = [retrying, plain].map((c) => logTime(c.logs, /lost the broker connection/, stopAt));
    const clientBack = [retrying, plain].map((c) => logTime(c.logs, /reconnected to the broker/, stopAt));
    const recoveryA = recoveryAfter(a.summary, clientLost[0], backAt);
    const recoveryB = recoveryAfter(b.summary, clientLost[1], backAt);

    figure(t, SCENARIO, 'broker down (stop_app to first AMQP connection)', `${ms(backAt - stopAt)} ms`);
    figure(t, SCENARIO, 'stop_app took', `${ms(stoppedAt - stopAt)} ms`);
    figure(
      t,
      SCENARIO,
      'client connection loss noticed after stop_app',
      `${clientLost.map((at) => (at === undefined ? '-' : ms(at - stopAt))).join(' / ')} ms`,
    );
    figure(
      t,
      SCENARIO,
      'broker back -> servers reconnected',
      `${serverRecovery.map((v) => (v === undefined ? '-' : ms(v))).join(' / ')} ms`,
    );
    figure(
      t,
      SCENARIO,
      'broker back -> clients reconnected',
      `${clientBack.map((at) => (at === undefined ? '-' : ms(at - backAt))).join(' / ')} ms`,
    );
    figure(t, SCENARIO, 'broker back -> first ok call (--retries 10)', `${recoveryA ?? '-'} ms`);
    figure(t, SCENARIO, 'broker back -> first ok call (--retries 0)', `${recoveryB ?? '-'} ms`);
    figure(
      t,
      SCENARIO,
      'calls / ok / wrong (--retries 10)',
      `${a.summary.calls} / ${a.summary.ok} / ${a.summary.wrong}`,
    );
    figure(t, SCENARIO, 'retried calls (--retries 10)', a.summary.retried_calls);
    figure(
      t,
      SCENARIO,
      'calls / ok / wrong (--retries 0)',
      `${b.summary.calls} / ${b.summary.ok} / ${b.summary.wrong}`,
    );
    figure(t, SCENARIO, 'errors (--retries 0)', JSON.stringify(b.summary.errors));
    figure(
      t,
      SCENARIO,
      'stalls; calls in flight when the test ended the loads',
      `${a.summary.stalls.length} / ${b.summary.stalls.length}; ${a.summary.abandoned_calls} / ${b.summary.abandoned_calls}`,
    );

    // Both loads ran through the outage until the test ended them.
    assert.ok(a.summary.interrupted && b.summary.interrupted, 'the loads ran until the test stopped them');
    // With retries: every call answered, and right (the exit code of a load stopped early).
    assert.equal(a.code, EXIT.interrupted, retrying.stderr.slice(-2000));
    assert.deepEqual(a.summary.errors, {});
    assert.equal(a.summary.ok, a.summary.calls);
    assert.equal(a.summary.wrong, 0);
    // Each of the 32 callers had a call in flight at the close (the servers were paused).
    assert.equal(a.summary.retried_calls, 32, 'the calls in flight at the restart were retried');
    // Without: the calls in flight fail as retryable (CONNECTION_LOST), and the rest succeed.
    assert.equal(b.summary.wrong, 0);
    const failed = Object.values(b.summary.errors).reduce((sum, n) => sum + n, 0);
    assert.equal(b.summary.ok + failed, b.summary.calls);
    assert.deepEqual(b.summary.errors, { CONNECTION_LOST: 32 }, 'the 32 calls in flight failed with CONNECTION_LOST');
    // They fail fast: the clients saw the connection go as the broker stopped, not at a timeout.
    for (const at of clientLost) assert.ok(at !== undefined && at - stopAt < stoppedAt - stopAt + 1000);
    // Both sides came back by themselves, in under 5 s from the broker's return.
    for (const [i, v] of serverRecovery.entries()) {
      const tail = (servers[i]?.stderr ?? '').split('\n').slice(-12).join('\n');
      assert.ok(v !== undefined && v < 5000, `server ${i} reconnected ${v} ms after the broker was back:\n${tail}`);
    }
    for (const v of [recoveryA, recoveryB]) {
      assert.ok(v !== undefined && v < 5000, `first successful call ${v} ms after the broker was back`);
    }
    for (const s of servers) assert.equal(s.child.exitCode, null, 'no server process restarted');
    assert.deepEqual(await stopAll(servers), [0, 0]);
    // What was queued at the restart survived it (quorum queue) and was answered or expired.
    assert.equal(await fresh.messageCount(queue), 0);
  });
});
