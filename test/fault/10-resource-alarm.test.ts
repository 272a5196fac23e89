import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT } from '../../src/cmd/fib-rpc-client/exit-codes.ts';
import { type AlarmKind, prepareAlarm, queueCounts } from '../support/alarms.ts';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { cannotControlBroker } from '../support/broker-control.ts';
import { logTime } from '../support/logs.ts';
import { ClientProcess, ServerProcess, stopAll } from '../support/processes.ts';
import { waitFor } from '../support/wait.ts';
import { figure, ms } from './support.ts';

const SCENARIO = '10 resource alarm';
const TIMEOUT_MS = 3000;
/** What the issue asks of a call under an alarm: its process gone within its timeout and a second. */
const EXIT_SLACK_MS = 1000;
const LOAD_MS = 5000;
const CONCURRENCY = 8;
const BLOCKED = /broker blocked publishing/;
const FIB_30 = '832040';

const skip = await cannotControlBroker();

/** The server's gauge for the block, once it reads `value`. */
async function gaugeReads(server: ServerProcess, value: number): Promise<number> {
  return waitFor(
    async () => ((await server.metric('rpc_server_broker_blocked')) === value ? Date.now() : undefined),
    20_000,
    `rpc_server_broker_blocked to read ${value}`,
  );
}

/** Nothing left behind: the work queue and its dead-letter queue are empty. */
async function assertNothingLeft(admin: BrokerAdmin, queue: string): Promise<void> {
  await admin.waitForCount(queue, 0, 15_000);
  assert.equal(await admin.messageCount(`${queue}.dlq`), 0, 'nothing dead-lettered');
}

for (const kind of ['memory', 'disk'] as AlarmKind[]) {
  const name = `${SCENARIO} (${kind})`;
  describe(name, { skip: skip ?? false }, () => {
    it(`a single call under a ${kind} alarm ends with its documented code within its timeout + 1 s, and its process exits`, {
      timeout: 600_000,
    }, async (t) => {
      await using admin = await BrokerAdmin.open();
      const queue = admin.track(uniqueQueue(`alarm-call-${kind}`));
      await using server = await ServerProcess.start({ RPC_QUEUE: queue });
      const alarm = await prepareAlarm(kind);
      t.after(() => alarm.clear());
      await alarm.raise();
      const started = Date.now();
      await using client = ClientProcess.start(['--timeout', String(TIMEOUT_MS), '30'], { RPC_QUEUE: queue });
      const [code] = await client.exited;
      const exitedAt = Date.now();
      const blockedAt = logTime(client.logs, BLOCKED);
      // A fresh connection is blocked on its first publish: the call's request is out by then.
      const callStart = blockedAt ?? started;
      await alarm.clear();

      figure(t, name, 'single call: exit code', code ?? 'none');
      figure(t, name, 'single call: blocked noticed -> exit', `${ms(exitedAt - callStart)} ms (timeout ${TIMEOUT_MS})`);
      figure(t, name, 'single call: process start -> exit', `${ms(exitedAt - started)} ms`);

      assert.ok(blockedAt !== undefined, `the client logged the block:\n${client.stderr}`);
      assert.equal(code, EXIT.timeout, client.stderr);
      assert.match(client.stderr, /TIMEOUT: no reply within 3000 ms: the broker blocked publishing .*resource alarm/);
      assert.ok(
        exitedAt - callStart <= TIMEOUT_MS + EXIT_SLACK_MS,
        `exited ${exitedAt - callStart} ms after its call began`,
      );
      // The request the broker never read is read after the alarm: expired, acked, gone.
      await assertNothingLeft(admin, queue);
      assert.deepEqual(await stopAll([server]), [0]);
    });

    it(`loads under a ${kind} alarm: one ends on time with its summary, counting BROKER_BLOCKED; one with --retries carries its calls past the alarm`, {
      timeout: 600_000,
    }, async (t) => {
      await using admin = await BrokerAdmin.open();
      const queue = admin.track(uniqueQueue(`alarm-load-${kind}`));
      // One server's prefetch (16) holds every call in flight, so none waits in the queue to expire there.
      await using server = await ServerProcess.start({ RPC_QUEUE: queue });
      const load = (duration: string, retries: number) =>
        ClientProcess.start(
          [
            ...['--load', '--concurrency', String(CONCURRENCY), '--duration', duration, '--spread', '--verify'],
            ...['--json', '--timeout', String(TIMEOUT_MS), '--retries', String(retries), '25'],
          ],
          { RPC_QUEUE: queue },
        );
      const alarm = await prepareAlarm(kind);
      t.after(() => alarm.clear());
      await alarm.raise();
      // Both start under the alarm: rabbitmqctl takes seconds to tens of seconds here, too
      // long and too uneven to raise and clear the alarm inside a load of fixed length.
      const began = Date.now();
      await using timed = load(`${LOAD_MS / 1000}s`, 0);
      // Backoff capped at 2 s: 100 retries outlast any clear measured here.
      await using retrying = load('600s', 100);
      const a = await timed.summary();
      const endedAt = Date.now();
      const clearingAt = Date.now();
      const clearedAt = await alarm.clear();
      // Time for the retries to get through, then the test ends the load.
      await sleep(5000);
      retrying.child.kill('SIGTERM');
      const b = await retrying.summary();
      const blocked = (s: typeof a.summary) => s.errors.BROKER_BLOCKED ?? 0;

      figure(
        t,
        name,
        'load: process start -> summary and exit',
        `${ms(endedAt - began)} ms (duration ${LOAD_MS}, timeout ${TIMEOUT_MS})`,
      );
      figure(t, name, 'load: its own duration_s', a.summary.duration_s);
      figure(
        t,
        name,
        'load --retries 0: calls / ok / errors',
        `${a.summary.calls} / ${a.summary.ok} / ${JSON.stringify(a.summary.errors)}`,
      );
      figure(t, name, 'load --retries 0: exit code', a.code ?? 'none');
      figure(t, name, 'alarm cleared (rabbitmqctl, then seen gone)', `${ms(clearedAt - clearingAt)} ms`);
      figure(
        t,
        name,
        'load --retries 100: calls / ok / wrong / retried',
        `${b.summary.calls} / ${b.summary.ok} / ${b.summary.wrong} / ${b.summary.retried_calls}`,
      );
      figure(t, name, 'load --retries 100: errors', JSON.stringify(b.summary.errors));

      // On time: no call outlives its deadline, and closing does not wait for the broker.
      assert.ok(
        a.summary.duration_s * 1000 <= LOAD_MS + TIMEOUT_MS + EXIT_SLACK_MS,
        `load took ${a.summary.duration_s} s`,
      );
      assert.equal(a.code, EXIT.unexpected, 'a load with failed calls exits 1');
      assert.equal(a.summary.ok, 0);
      assert.ok(blocked(a.summary) > 0, 'calls made during the alarm failed with BROKER_BLOCKED');
      for (const [which, { summary }] of [
        ['--retries 0', a],
        ['--retries 100', b],
      ] as const) {
        assert.equal(summary.wrong, 0, which);
        const failed = Object.values(summary.errors).reduce((sum, n) => sum + n, 0);
        assert.equal(summary.ok + failed, summary.calls, `${which}: every call answered or failed`);
        for (const code of Object.keys(summary.errors)) {
          assert.ok(['BROKER_BLOCKED', 'TIMEOUT'].includes(code), `${which}: ${code}`);
        }
        // Only calls whose request was out when the broker blocked wait for their deadline.
        assert.ok((summary.errors.TIMEOUT ?? 0) <= CONCURRENCY, `${which}: ${summary.errors.TIMEOUT} timeouts`);
      }
      assert.ok(b.summary.interrupted, 'the retrying load ran until the test ended it');
      assert.equal(blocked(b.summary), 0, 'with retries, every blocked call got through after the alarm');
      assert.ok(b.summary.ok > 0 && b.summary.retried_calls > 0, 'blocked calls were retried, and succeeded');
      await assertNothingLeft(admin, queue);
      assert.deepEqual(await stopAll([server]), [0]);
    });

    it(`under a ${kind} alarm servers keep the requests they got before it: one answers after it clears, one stopped while blocked exits at once and its request goes to the other`, {
      timeout: 600_000,
    }, async (t) => {
      await using admin = await BrokerAdmin.open();
      const queue = admin.track(uniqueQueue(`alarm-inflight-${kind}`));
      // One request each (prefetch 1); frozen, a server holds what the broker delivers to it.
      // A long heartbeat (the broker caps it at its own, 60 s by default) outlasts the freeze,
      // which slow rabbitmqctl runs stretch to tens of seconds: with the default 10 s the broker
      // drops a frozen server's connection and requeues its request.
      await using servers = await ServerProcess.startMany(2, {
        RPC_QUEUE: queue,
        PREFETCH: '1',
        AMQP_HEARTBEAT_S: '300',
      });
      const alarm = await prepareAlarm(kind);
      t.after(() => alarm.clear());
      const keeper = servers[0] as ServerProcess;
      const leaver = servers[1] as ServerProcess;
      for (const s of servers) s.child.kill('SIGSTOP');
      await using x = ClientProcess.start(['--timeout', '300000', '30'], { RPC_QUEUE: queue });
      await using y = ClientProcess.start(['--timeout', '300000', '29'], { RPC_QUEUE: queue });
      await waitFor(
        async () => ((await queueCounts(queue)).unacked === 2 ? true : undefined),
        120_000,
        'both delivered',
      );
      const raisedAt = await alarm.raise();
      for (const s of servers) s.child.kill('SIGCONT');
      // Their replies are what gets the servers blocked: RabbitMQ blocks a connection as it publishes.
      const blockedAt = Math.max(...(await Promise.all(servers.map((s) => gaugeReads(s, 1)))));
      assert.ok(x.running && y.running, 'no reply gets through the alarm');

      // Stopped while blocked, a server must not wait for the broker, which reads nothing from it.
      const stopAt = Date.now();
      const [leaverCode] = await stopAll([leaver]);
      const stoppedIn = Date.now() - stopAt;
      // When each call's process ended: the clear below returns only once a poll sees the alarm gone.
      const ended = [x, y].map((c) => c.exited.then(() => Date.now()));
      const clearingAt = Date.now();
      const clearedAt = await alarm.clear();
      const results = await Promise.all([x.result(), y.result()]);
      const answeredAt = Math.max(...(await Promise.all(ended)));
      await gaugeReads(keeper, 0);
      const answered = await keeper.metric('rpc_server_requests_total', 'outcome="ok"');

      figure(t, name, 'in flight: alarm raised -> both servers blocked (gauge 1)', `${ms(blockedAt - raisedAt)} ms`);
      figure(t, name, 'in flight: blocked server SIGTERM -> exit (code)', `${ms(stoppedIn)} ms (${leaverCode})`);
      figure(
        t,
        name,
        'in flight: clear issued -> both calls answered (-> alarm seen gone)',
        `${ms(answeredAt - clearingAt)} ms (${ms(clearedAt - clearingAt)} ms)`,
      );
      assert.ok(answeredAt >= clearingAt, 'answered only once the alarm was being cleared');
      figure(t, name, 'in flight: requests the remaining server answered', answered);

      assert.equal(leaverCode, 0, leaver.stderr.slice(-2000));
      assert.ok(stoppedIn < 5000, `the blocked server took ${stoppedIn} ms to stop`);
      for (const [i, r] of results.entries()) assert.equal(r.code, 0, `call ${i}: ${r.stderr}`);
      assert.deepEqual(
        results.map((r) => r.stdout.trim()),
        [FIB_30, '514229'],
      );
      // Its own request, answered through the alarm; and the other's, unless the stopped server's
      // reply and ack, written before it went, were still read by the broker once the alarm cleared.
      assert.ok(answered === 1 || answered === 2, `${answered} answered`);
      await assertNothingLeft(admin, queue);
      assert.deepEqual(await stopAll([keeper]), [0]);
    });
  });
}
