import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RABBITMQ4_SERIES, uniqueQueue } from '../support/broker.ts';
import { runClient, ServerProcess, stopAll } from '../support/processes.ts';
import { cannotRunRabbitmq4, Rabbitmq4Cluster } from '../support/rabbitmq4.ts';
import { assertEveryCallAnswered, figure, ms, verifiedClusterLoad } from './support.ts';

const SCENARIO = '9 node loss';
/**
 * node 1's AMQP port; its own, apart from the bench's cluster (5691) and the one node (5682),
 * and per stand-in series (4.3's clusters start at 5721), so both series' suites can run at once.
 */
const CLUSTER_PORT = Number(process.env.NODE_LOSS_PORT || (RABBITMQ4_SERIES === '4.3' ? 5725 : 5695));
const LOAD_S = 30;
const KILL_AFTER_MS = 8000;
const DOWN_MS = 8000;

const skip = cannotRunRabbitmq4();

/** `urls` starting at index `first`: a process given it connects to that node first. */
const rotated = (urls: string[], first: number) => [...urls.slice(first), ...urls.slice(0, first)].join(',');

describe(SCENARIO, { skip: skip ?? false }, () => {
  it(`3-node RabbitMQ 4 cluster, quorum request queue, 3 servers, load with --retries 5: the node leading the queue is SIGKILLed under load and restarted ${DOWN_MS / 1000} s later; every call answered, none wrong`, {
    timeout: 600_000,
  }, async (t) => {
    const cluster = await Rabbitmq4Cluster.up(3, CLUSTER_PORT);
    // Registered first, so it also runs when what follows fails: no node outlives the test.
    t.after(() => cluster.down());
    const [first = ''] = cluster.urls;
    const version = await cluster.version();
    const queue = uniqueQueue('node-loss');
    const env = { RPC_QUEUE: queue, RPC_QUEUE_TYPE: 'quorum' };

    // A quorum queue is led from the node of the client that declares it (RabbitMQ 4's
    // client-local leader locator): one server on node 1 declares it, then leaves.
    const declarer = await ServerProcess.start({ ...env, AMQP_URL: first });
    assert.deepEqual(await stopAll([declarer]), [0]);
    const leader = await cluster.leader(queue);

    // Until AMQP_URL takes a list of nodes, processes are given only nodes that survive: the
    // scenario then covers the queue's leader moving, not a client moving to another node.
    const probe = await runClient(['1'], { ...env, AMQP_URL: cluster.urls.join(','), RPC_TIMEOUT_MS: '3000' });
    const lists = !(probe.code === 2 && /AMQP_URL/.test(probe.stderr));
    const survivors = cluster.urls.filter((_, i) => i + 1 !== leader);
    // With lists, the leader's node comes first for one server and the client, so the kill
    // also cuts their connections.
    const urlFor = (i: number) => (lists ? rotated(cluster.urls, (leader - 1 + i) % 3) : (survivors[i % 2] ?? ''));

    const servers = await Promise.all([0, 1, 2].map((i) => ServerProcess.start({ ...env, AMQP_URL: urlFor(i) })));
    const load = verifiedClusterLoad(LOAD_S, { ...env, AMQP_URL: urlFor(0) });
    try {
      await sleep(KILL_AFTER_MS);
      const killAt = Date.now();
      await cluster.kill(leader);
      const killedAt = Date.now();
      // The new leader, as the cluster reports it, and when.
      let newLeader = leader;
      while (newLeader === leader && Date.now() - killAt < 30_000) {
        newLeader = await cluster.leader(queue).catch(() => leader);
      }
      const electedAt = Date.now();
      await sleep(Math.max(0, killAt + DOWN_MS - Date.now()));
      const restartAt = Date.now();
      await cluster.start(leader);
      const restartedAt = Date.now();

      const { code, summary } = await load.summary();
      const longest = Math.max(0, ...summary.stalls.map((s) => s.duration_ms));
      const spanning = summary.stalls.find((s) => Date.parse(s.start) <= killAt && Date.parse(s.end) >= killAt);
      const firstOkAfterKill = spanning === undefined ? undefined : Date.parse(spanning.end) - killAt;

      figure(t, SCENARIO, 'nodes; queue', `3 (RabbitMQ ${version}, Debian package as a stand-in); quorum`);
      figure(
        t,
        SCENARIO,
        'processes connect to',
        lists ? 'all 3 nodes (AMQP_URL list, leader first for 1 server + client)' : 'the 2 surviving nodes only',
      );
      figure(
        t,
        SCENARIO,
        'leader SIGKILLed (node) -> new leader reported',
        `${leader} -> ${newLeader} in ${ms(electedAt - killAt)} ms`,
      );
      figure(t, SCENARIO, 'kill took', `${ms(killedAt - killAt)} ms`);
      figure(t, SCENARIO, 'node restart until it runs again', `${ms(restartedAt - restartAt)} ms`);
      figure(t, SCENARIO, 'longest stall (no call succeeded)', `${ms(longest)} ms`);
      figure(
        t,
        SCENARIO,
        'kill -> first successful call',
        firstOkAfterKill === undefined ? 'under 1 s (no stall)' : `${ms(firstOkAfterKill)} ms`,
      );
      figure(t, SCENARIO, 'stalls', summary.stalls.length);
      figure(t, SCENARIO, 'calls / ok / wrong', `${summary.calls} / ${summary.ok} / ${summary.wrong}`);
      figure(t, SCENARIO, 'retried calls', summary.retried_calls);
      figure(t, SCENARIO, 'duplicates dropped by the client', summary.duplicates_dropped);
      figure(
        t,
        SCENARIO,
        'calls/s; p99 / max latency',
        `${summary.calls_per_s}/s; ${summary.p99_ms} / ${summary.max_ms} ms`,
      );

      assert.notEqual(newLeader, leader, 'another node took the lead');
      await assertEveryCallAnswered(load, { code, summary }, servers);
    } finally {
      load.child.kill('SIGKILL');
      await stopAll(servers);
    }
  });
});
