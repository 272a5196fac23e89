import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { logTime } from '../support/logs.ts';
import { ClientProcess, ServerProcess, stopAll } from '../support/processes.ts';
import { waitFor } from '../support/wait.ts';
import { figure } from './support.ts';

const SCENARIO = '7 client dies mid-call';
const CALLS_IN_FLIGHT = 100;

describe(SCENARIO, () => {
  it(`a client SIGKILLed with ${CALLS_IN_FLIGHT} calls in flight: the server answers them into the void and carries on`, {
    timeout: 120_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('client-dies'));
    // debug: the server logs each request it settles, with its correlation id.
    // Its stop at the end wakes it first (SIGCONT), should the test fail while it is frozen.
    await using server = await ServerProcess.start({ RPC_QUEUE: queue, LOG_LEVEL: 'debug' });
    await using victim = ClientProcess.start(
      [
        ...['--load', '--concurrency', String(CALLS_IN_FLIGHT), '--duration', '60s'],
        ...['--spread', '--verify', '--timeout', '60000', '--json', '2000'],
      ],
      { RPC_QUEUE: queue },
    );
    await sleep(2000);
    // Freeze the server so every one of the victim's calls is outstanding when it dies.
    server.child.kill('SIGSTOP');
    await sleep(1000);
    const queued = await admin.messageCount(queue);
    victim.child.kill('SIGKILL');
    await victim.exited;
    const killedAt = Date.now();
    server.child.kill('SIGCONT');
    await waitFor(async () => ((await admin.messageCount(queue)) === 0 ? true : undefined), 30_000, 'an empty queue');
    await sleep(500);
    // The victim's correlation ids share its prefix; what the server settled after the kill went nowhere.
    const before = server.logs.filter((l) => l.msg === 'request settled' && Date.parse(String(l.time)) < killedAt);
    const prefix = String(before[0]?.correlationId ?? '').slice(0, 8);
    const intoTheVoid = server.logs.filter(
      (l) =>
        l.msg === 'request settled' &&
        Date.parse(String(l.time)) >= killedAt &&
        String(l.correlationId).startsWith(prefix),
    ).length;

    // Someone else uses the same server right after: nothing is disturbed.
    await using bystander = ClientProcess.start(
      ['--load', '--duration', '5s', '--spread', '--verify', '--json', '2000'],
      {
        RPC_QUEUE: queue,
      },
    );
    const { code, summary } = await bystander.summary();
    const lost = logTime(server.logs, 'lost the broker connection, reconnecting');

    figure(t, SCENARIO, 'calls in flight when the client died', CALLS_IN_FLIGHT);
    figure(t, SCENARIO, 'of which still queued (the rest prefetched)', queued);
    figure(t, SCENARIO, 'replies the server sent after the death (to nowhere)', intoTheVoid);
    figure(t, SCENARIO, 'server connection drops', lost === undefined ? 0 : 1);
    figure(t, SCENARIO, 'next client: calls / ok / wrong', `${summary.calls} / ${summary.ok} / ${summary.wrong}`);

    assert.ok(prefix.length === 8, 'found the victim in the server log');
    // Every request of the dead client that had reached the broker was answered after its
    // death: those queued, plus those the server had prefetched. (A request still in the
    // client's own buffers when it was killed never left it.)
    assert.ok(intoTheVoid >= queued && intoTheVoid <= CALLS_IN_FLIGHT + 1, `${intoTheVoid} replies, ${queued} queued`);
    assert.equal(lost, undefined, 'the server kept its connection');
    assert.equal(code, 0, bystander.stderr.slice(-2000));
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.ok, summary.calls);
    assert.equal(summary.wrong, 0);
    assert.equal(server.child.exitCode, null);
    assert.deepEqual(await stopAll([server]), [0]);
    assert.equal(await admin.messageCount(`${queue}.dlq`), 0);
  });
});
