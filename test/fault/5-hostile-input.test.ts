import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DIRECT_REPLY_TO } from '@fib-rpc/rpc';
import type { Channel, Options } from 'amqplib';
import { BrokerAdmin, closesOnUnknownReplyNode, uniqueQueue } from '../support/broker.ts';
import { ClientProcess, metricSum, ServerProcess, stopAll } from '../support/processes.ts';
import { countReplies, craftedReplyTo, replyAddress, sendRequest } from '../support/requests.ts';
import { waitFor } from '../support/wait.ts';
import { figure, mb, RssSampler } from './support.ts';

const SCENARIO = '5 hostile input';
const TOTAL = 10_000;
const HUGE = 10; // 10 MB bodies among them
const POISON = 3; // reply_to addresses crafted to make the broker drop the server's connection
const DELIVERY_LIMIT = 5;
const PREFETCH = 16;
const SERVER_RSS_LIMIT_MB = 400;

/** Where a hostile message must end: an error reply to us, the dead-letter queue, or a reply to nowhere. */
type Fate = 'error reply' | 'dead-lettered' | 'unroutable reply';

interface Hostile {
  kind: string;
  fate: Fate;
  body: Buffer;
  properties: Options.Publish;
}

const json = (value: string) => Buffer.from(value);
const JSON_TYPE = { contentType: 'application/json' };

/** Bodies a server must refuse with INVALID_REQUEST (or UNKNOWN_METHOD), never crash on. */
const bodies: Array<[string, () => Buffer, Options.Publish?]> = [
  ['random bytes', () => randomBytes(1 + Math.floor(Math.random() * 300))],
  ['invalid UTF-8', () => Buffer.concat([json('{"n":'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), json('1}')])],
  ['over the size limit (100 kB JSON)', () => json(`{"n":1,"pad":"${'x'.repeat(100_000)}"}`)],
  ['deeply nested array (20,000 levels)', () => json(`${'['.repeat(20_000)}${']'.repeat(20_000)}`)],
  ['deeply nested object (10,000 levels)', () => json(`${'{"n":'.repeat(10_000)}1${'}'.repeat(10_000)}`)],
  ['wrong type: string', () => json('{"n":"thirty"}')],
  [
    'wrong type: boolean, null, array',
    () => json(['{"n":true}', '{"n":null}', '[1]', '{"n":[30]}'][Math.floor(Math.random() * 4)] ?? ''),
  ],
  [
    'wrong shape',
    () => json(['{}', '{"m":30}', '{"__proto__":{"n":5}}', 'null', '"n"'][Math.floor(Math.random() * 5)] ?? ''),
  ],
  ['float', () => json(['{"n":1.5}', '{"n":1e308}', '{"n":-0.5}', '2.000001'][Math.floor(Math.random() * 4)] ?? '')],
  ['negative', () => json(['{"n":-1}', '{"n":-9007199254740993}', '-30'][Math.floor(Math.random() * 3)] ?? '')],
  [
    'n above FIB_MAX_N',
    () => json(['{"n":100001}', '{"n":1e21}', '{"n":9007199254740993}'][Math.floor(Math.random() * 3)] ?? ''),
  ],
  [
    'unknown method',
    () => json('{"n":5}'),
    { type: ['rm -rf', '__proto__', 'constructor', 'x'.repeat(200)][Math.floor(Math.random() * 4)] ?? 'x' },
  ],
  [
    'wrong content type',
    () => json('{"n":5}'),
    {
      contentType:
        ['application/xml', 'text/html; charset=utf-8', 'application/octet-stream'][Math.floor(Math.random() * 3)] ??
        'x',
    },
  ],
  ['plain text, not a number', () => json('thirty'), { contentType: 'text/plain' }],
  [
    'garbage headers',
    () => json('{"n":-1}'),
    { headers: { 'x-deadline': 'soon', 'x-rpc-version': { nested: [1, 2] }, traceparent: 'zz' } },
  ],
];

function hostileMessages(replyTo: string): Hostile[] {
  const messages: Hostile[] = [];
  const push = (kind: string, fate: Fate, body: Buffer, properties: Options.Publish) => {
    const i = messages.length;
    messages.push({
      kind,
      fate,
      body,
      properties: { messageId: `h-${i}`, ...properties, headers: { 'x-hostile': kind, ...properties.headers } },
    });
  };
  for (let i = 0; i < HUGE; i++) {
    push('huge JSON (10 MB)', 'error reply', json(`{"n":"${'9'.repeat(10 * 1024 * 1024)}"}`), {
      ...JSON_TYPE,
      replyTo,
      correlationId: `h-${messages.length}`,
    });
  }
  const withoutReplyPath: Array<[string, Fate, (body: Buffer, props: Options.Publish) => Options.Publish]> = [
    ['no reply_to', 'dead-lettered', (_b, p) => ({ ...p, replyTo: undefined })],
    ['no correlation_id', 'dead-lettered', (_b, p) => ({ ...p, correlationId: undefined })],
    [
      'malformed direct reply-to',
      'dead-lettered',
      (_b, p) => ({
        ...p,
        replyTo: `${DIRECT_REPLY_TO}.${randomBytes(6).toString('base64')}.${randomBytes(4).toString('base64')}`,
      }),
    ],
    [
      'reply_to naming no queue',
      'unroutable reply',
      (_b, p) => ({ ...p, replyTo: `no-such-queue-${randomBytes(4).toString('hex')}` }),
    ],
  ];
  while (messages.length < TOTAL) {
    const i = messages.length;
    const [kind, make, extra] = bodies[i % bodies.length] ?? bodies[0]!;
    const base: Options.Publish = { ...JSON_TYPE, replyTo, correlationId: `h-${i}`, ...extra };
    // One in five also lacks a usable reply path.
    const twist = i % 5 === 0 ? withoutReplyPath[(i / 5) % withoutReplyPath.length] : undefined;
    if (twist) push(`${kind}, ${twist[0]}`, twist[1], make(), twist[2](make(), base));
    else push(kind, 'error reply', make(), base);
  }
  return messages;
}

async function publishAll(channel: Channel, queue: string, messages: Hostile[]): Promise<void> {
  for (const m of messages) {
    if (!channel.sendToQueue(queue, m.body, m.properties)) await new Promise((r) => channel.once('drain', r));
  }
}

describe(SCENARIO, () => {
  it(`${TOTAL} hostile messages during verified load: no server crash, every one answered with an error or dead-lettered, real traffic all right`, {
    timeout: 180_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('hostile'));
    const env = { RPC_QUEUE: queue, RPC_DELIVERY_LIMIT: String(DELIVERY_LIMIT) };
    await using servers = await ServerProcess.startMany(2, env);
    using rss = new RssSampler();
    for (const [i, s] of servers.entries()) rss.watch(`server ${i}`, s.pid);
    await using load = ClientProcess.start(
      ['--load', '--concurrency', '32', '--duration', '20s', '--spread', '--verify', '--json', '5000'],
      env,
    );
    await using channel = await admin.openChannel();
    let replyBytes = 0;
    const replies = await countReplies(channel, (msg) => {
      replyBytes += msg.content.length;
    });
    const messages = hostileMessages(DIRECT_REPLY_TO);
    assert.equal(messages.length, TOTAL);

    await sleep(2000);
    const publishStarted = Date.now();
    await publishAll(channel, queue, messages);
    const publishMs = Date.now() - publishStarted;

    const expected = { 'error reply': 0, 'dead-lettered': 0, 'unroutable reply': 0 };
    for (const m of messages) expected[m.fate]++;
    const dlq = `${queue}.dlq`;
    // Settled when replies + dead letters + returned replies account for every message.
    await waitFor(
      async () => {
        const unroutable = await metricSum(servers, 'rpc_server_unroutable_replies_total');
        const dead = await admin.messageCount(dlq);
        return replies.size + dead + unroutable >= TOTAL && (await admin.messageCount(queue)) === 0 ? true : undefined;
      },
      120_000,
      'every hostile message to be answered or dead-lettered',
    );
    const { code, summary } = await load.summary();
    rss.stop();

    // Read the dead letters back: which messages they are, and why they are there.
    const deadLettered = new Map<string, string>();
    for (let msg = await channel.get(dlq, { noAck: true }); msg; msg = await channel.get(dlq, { noAck: true })) {
      deadLettered.set(String(msg.properties.messageId), String(msg.properties.headers?.['x-hostile']));
    }
    const unroutable = await metricSum(servers, 'rpc_server_unroutable_replies_total');
    const reconnections = servers.reduce(
      (n, s) => n + s.logs.filter((l) => l.msg === 'reconnected to the broker').length,
      0,
    );
    const repeated = [...replies.values()].filter((n) => n > 1).length;
    const fates = { 'error reply': 0, 'dead-lettered': 0, 'unroutable reply': 0, unaccounted: 0 };
    const misplaced: string[] = [];
    for (const m of messages) {
      const id = String(m.properties.messageId);
      const fate: Fate | 'unaccounted' = replies.has(id)
        ? 'error reply'
        : deadLettered.has(id)
          ? 'dead-lettered'
          : 'unaccounted';
      fates[fate]++;
      if (fate !== m.fate && !(fate === 'unaccounted' && m.fate === 'unroutable reply'))
        misplaced.push(`${m.kind} -> ${fate}`);
    }
    fates['unroutable reply'] = fates.unaccounted;

    figure(t, SCENARIO, 'hostile messages published', TOTAL);
    figure(t, SCENARIO, 'of which 10 MB bodies', HUGE);
    figure(t, SCENARIO, 'publish time', `${publishMs} ms`);
    figure(t, SCENARIO, 'answered with an error reply', fates['error reply']);
    figure(t, SCENARIO, 'dead-lettered', fates['dead-lettered']);
    figure(t, SCENARIO, 'answered to a reply_to naming no queue (returned)', unroutable);
    figure(t, SCENARIO, 'sum', fates['error reply'] + fates['dead-lettered'] + unroutable);
    figure(t, SCENARIO, 'server reconnections', reconnections);
    figure(t, SCENARIO, 'server restarts', servers.filter((s) => s.child.exitCode !== null).length);
    figure(t, SCENARIO, 'server peak RSS', `${mb(rss.peak('server'))} MB`);
    figure(t, SCENARIO, 'real traffic: calls / ok / wrong', `${summary.calls} / ${summary.ok} / ${summary.wrong}`);

    assert.deepEqual(misplaced.slice(0, 10), []);
    assert.equal(fates['error reply'], expected['error reply']);
    assert.equal(fates['dead-lettered'], expected['dead-lettered']);
    assert.equal(unroutable, expected['unroutable reply']);
    assert.equal(fates['error reply'] + fates['dead-lettered'] + unroutable, TOTAL);
    assert.equal(repeated, 0, 'no hostile message answered twice');
    assert.equal(reconnections, 0, 'no hostile message cost a server its connection');
    for (const s of servers) assert.equal(s.child.exitCode, null, 'no server exited');
    assert.ok(rss.peak('server') < SERVER_RSS_LIMIT_MB * 1024 * 1024, `server RSS ${mb(rss.peak('server'))} MB`);
    assert.equal(code, 0, load.stderr.slice(-2000));
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.ok, summary.calls);
    assert.equal(summary.wrong, 0);
    assert.ok(replyBytes > 0);
    assert.deepEqual(await stopAll(servers), [0, 0]);
    for (const s of servers) assert.doesNotMatch(s.stderr, /uncaught|"level":"fatal"/);
  });

  it('a reply_to crafted to make the broker drop the connection (RabbitMQ 3.10) costs one reconnection, is dead-lettered on its second delivery, and takes nothing with it (RabbitMQ 4 drops the reply: nothing falls)', {
    timeout: 120_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('crafted'));
    const env = { RPC_QUEUE: queue, RPC_DELIVERY_LIMIT: String(DELIVERY_LIMIT), PREFETCH: String(PREFETCH) };
    await using servers = await ServerProcess.startMany(2, env);
    await using load = ClientProcess.start(
      [
        ...['--load', '--concurrency', '32', '--duration', '10s', '--spread', '--verify', '--json'],
        ...['--timeout', '5000', '2000'],
      ],
      env,
    );
    await using channel = await admin.openChannel();
    // Learn our own direct reply-to address, to craft a poisonous one from it.
    const poison = craftedReplyTo(await replyAddress(channel));
    await sleep(2000);
    for (let i = 0; i < POISON; i++) {
      sendRequest(channel, queue, '{"n":5}', {
        replyTo: poison,
        correlationId: `p-${i}`,
        messageId: `p-${i}`,
      });
      await sleep(1000);
    }
    const { summary } = await load.summary();
    const dlq = `${queue}.dlq`;
    await waitFor(
      async () => ((await admin.messageCount(queue)) === 0 ? true : undefined),
      30_000,
      'the queue to empty',
    );
    let poisons = 0;
    let collateral = 0;
    for (let msg = await channel.get(dlq, { noAck: true }); msg; msg = await channel.get(dlq, { noAck: true })) {
      if (String(msg.properties.messageId).startsWith('p-')) poisons++;
      else collateral++;
    }
    const reconnections = servers.reduce(
      (n, s) => n + s.logs.filter((l) => l.msg === 'reconnected to the broker').length,
      0,
    );
    const failed = Object.values(summary.errors).reduce((sum, n) => sum + n, 0);

    figure(t, SCENARIO, 'crafted reply_to requests', POISON);
    figure(t, SCENARIO, 'crafted: dead-lettered', poisons);
    figure(t, SCENARIO, 'crafted: server connection drops', reconnections);
    figure(t, SCENARIO, 'crafted: innocent requests dead-lettered with them', collateral);
    figure(
      t,
      SCENARIO,
      'crafted: real calls / ok / failed / wrong',
      `${summary.calls} / ${summary.ok} / ${failed} / ${summary.wrong}`,
    );

    // RabbitMQ 4 (4.0.5) confirms and drops such a reply: the request is acked like any other.
    const falls = closesOnUnknownReplyNode(admin.version) ? POISON : 0;
    assert.equal(poisons, falls, 'every crafted request that made the broker drop a connection is dead-lettered');
    // The first delivery takes the consuming connection down; the second is answered through
    // the quarantine connection alone, which falls instead, and the request is dead-lettered.
    assert.equal(reconnections, falls, `${reconnections} drops of the consuming connection`);
    assert.equal(collateral, 0, 'no innocent request dead-lettered with them');
    assert.equal(failed, 0, JSON.stringify(summary.errors));
    assert.equal(summary.ok, summary.calls);
    assert.equal(summary.wrong, 0);
    for (const s of servers) assert.equal(s.child.exitCode, null, 'no server exited');
    assert.deepEqual(await stopAll(servers), [0, 0]);
  });
});
