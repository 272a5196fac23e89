import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DIRECT_REPLY_TO } from '@fib-rpc/rpc';
import { FibCache } from '../../src/fib/fib.ts';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { ClientProcess, ServerProcess, stopAll, stopAllAtEnd } from '../support/processes.ts';
import { countReplies, sendRequest } from '../support/requests.ts';
import { waitFor } from '../support/wait.ts';
import { DepthSampler, figure, mb, RssSampler } from './support.ts';

const SCENARIO = '6 flood';
const FLOOD = Number(process.env.FAULT_FLOOD ?? 200_000);
const MAX_IN_FLIGHT = 500;
const CALLERS = 5000;
const CLIENT_CALLS = 20_000;
const CLIENT_RSS_LIMIT_MB = 400;

describe(SCENARIO, () => {
  it(`${FLOOD} requests queued with no server, then a client with ${CALLERS} callers and maxInFlight ${MAX_IN_FLIGHT}, then 2 servers: all answered, memory bounded, queue back to 0`, {
    timeout: 420_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('flood'));
    const env = { RPC_QUEUE: queue };
    // A server declares the queue (quorum, with its dead-letter queue) and leaves.
    await stopAll([await ServerProcess.start(env)]);

    // 1. The flood: well-formed requests straight into the queue, nobody consuming.
    await using channel = await admin.openChannel();
    const expected = new FibCache();
    let wrong = 0;
    const answers = await countReplies(channel, (msg) => {
      const n = Number(String(msg.properties.correlationId).slice(2)) % 300;
      if ((JSON.parse(msg.content.toString()) as { result?: string }).result !== expected.get(n)) wrong++;
    });
    const publishStarted = Date.now();
    for (let i = 0; i < FLOOD; i++) {
      const ok = sendRequest(channel, queue, `{"n":${i % 300}}`, {
        type: 'fib',
        replyTo: DIRECT_REPLY_TO,
        correlationId: `f-${i}`,
      });
      if (!ok) await new Promise((resolve) => channel.once('drain', resolve));
    }
    await admin.waitForCount(queue, FLOOD, 120_000);
    const publishMs = Date.now() - publishStarted;
    t.diagnostic(`flood queued in ${publishMs} ms`);

    // 2. A client asked for far more concurrent calls than it may have in flight.
    await using depth = new DepthSampler(admin, queue, 100);
    using rss = new RssSampler(100);
    await using client = ClientProcess.start(
      [
        ...['--load', '--concurrency', String(CALLERS), '--count', String(CLIENT_CALLS)],
        ...['--spread', '--verify', '--timeout', '240000', '--json', '1000'],
      ],
      { ...env, MAX_IN_FLIGHT: String(MAX_IN_FLIGHT) },
    );
    rss.watch('client', client.pid);
    await using servers = stopAllAtEnd([]);
    await waitFor(() => (depth.last >= FLOOD + MAX_IN_FLIGHT ? true : undefined), 30_000, 'the client to publish');
    await sleep(2000); // it keeps waiting for slots, and publishes nothing more
    const depthBeforeServers = depth.max;
    t.diagnostic(`client published; depth ${depthBeforeServers}`);

    // 3. Two servers start and drain it all.
    const drainStarted = Date.now();
    servers.push(...(await ServerProcess.startMany(2, env)));
    for (const [i, s] of servers.entries()) rss.watch(`server ${i}`, s.pid);
    const { code, summary } = await client.summary();
    t.diagnostic(`client done after ${Date.now() - drainStarted} ms; flood answered so far ${answers.size}`);
    await waitFor(() => (answers.size >= FLOOD ? true : undefined), 240_000, 'every flood request to be answered');
    await waitFor(async () => ((await admin.messageCount(queue)) === 0 ? true : undefined), 30_000, 'an empty queue');
    const drainMs = Date.now() - drainStarted;
    await depth.stop();
    rss.stop();
    const repeated = [...answers.values()].filter((n) => n > 1).length;

    figure(t, SCENARIO, 'requests queued with no server', FLOOD);
    figure(t, SCENARIO, 'publish rate', `${Math.round(FLOOD / (publishMs / 1000))} msg/s`);
    figure(t, SCENARIO, 'client callers / maxInFlight', `${CALLERS} / ${MAX_IN_FLIGHT}`);
    figure(t, SCENARIO, 'queue depth before servers (flood + client)', depthBeforeServers);
    figure(t, SCENARIO, 'client peak RSS', `${mb(rss.peak('client'))} MB`);
    figure(t, SCENARIO, 'server peak RSS', `${mb(rss.peak('server'))} MB`);
    figure(t, SCENARIO, 'servers start -> all drained', `${Math.round(drainMs / 1000)} s`);
    figure(t, SCENARIO, 'drain rate (2 servers)', `${Math.round((FLOOD + CLIENT_CALLS) / (drainMs / 1000))} req/s`);
    figure(t, SCENARIO, 'flood answered / wrong / twice', `${answers.size} / ${wrong} / ${repeated}`);
    figure(t, SCENARIO, 'client calls / ok / wrong', `${summary.calls} / ${summary.ok} / ${summary.wrong}`);
    figure(t, SCENARIO, 'queue depth at the end', await admin.messageCount(queue));

    // The client never had more than maxInFlight requests out, however many callers waited.
    assert.equal(depthBeforeServers, FLOOD + MAX_IN_FLIGHT);
    assert.ok(rss.peak('client') < CLIENT_RSS_LIMIT_MB * 1024 * 1024, `client RSS ${mb(rss.peak('client'))} MB`);
    assert.equal(answers.size, FLOOD);
    assert.equal(wrong, 0);
    assert.equal(repeated, 0);
    assert.equal(code, 0, client.stderr.slice(-2000));
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.ok, CLIENT_CALLS);
    assert.equal(summary.wrong, 0);
    assert.equal(await admin.messageCount(queue), 0);
    assert.deepEqual(await stopAll(servers), [0, 0]);
  });
});
