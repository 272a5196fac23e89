import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RpcError } from '@fib-rpc/rpc';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { BROKER, BrokerAdmin, closesOnUnknownReplyNode, uniqueQueue } from '../support/broker.ts';
import {
  applyUsers,
  type BrokerUser,
  managementCall,
  type RenderedUsers,
  randomPassword,
  renderUsers,
  uniqueUserPrefix,
} from '../support/broker-users.ts';
import { TcpProxy } from '../support/proxy.ts';
import { poisonReplyTo, sendRequest } from '../support/requests.ts';
import {
  answersAfter,
  connectClient,
  cutEachDelivery,
  DOOMED,
  startDoomedServer,
  startServer,
} from '../support/rpc.ts';
import { TestBroker } from '../support/test-broker.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The chart's role users (files/broker-roles.json, applied by the users Job's script) on a
 * broker with the management API: a node of this suite's own on AMQP port 5679
 * (scripts/test-broker.sh, the machine's rabbitmq-server 3.10; the machine's broker has no
 * management plugin and keeps its users), or with BROKER=rabbitmq4 a RabbitMQ 4 node on 5688 (a
 * stand-in: Debian's 4.0.5 package). Every user and queue made here has a name of its own and is
 * deleted after; the node is stopped at the end.
 */

const GUEST = { username: 'guest', password: 'guest' };

let broker: TestBroker;
let management = '';
let admin: BrokerAdmin;
const queue = uniqueQueue('least-privilege');
const prefix = uniqueUserPrefix('lp');
let users: RenderedUsers;
const passwords: Record<string, string> = {
  server: randomPassword(),
  client: randomPassword(),
  keda: randomPassword(),
};
const made: string[] = [];

const until = (condition: () => boolean, what: string) => waitFor(condition, 15_000, what);

function user(role: string, from: RenderedUsers = users): BrokerUser {
  const found = from.users.find((u) => u.role === role);
  assert.ok(found, `the chart renders a ${role} user`);
  return found;
}

function urlOf(role: string, password = passwords[role] ?? '', from: RenderedUsers = users): string {
  const url = new URL(broker.url);
  url.username = user(role, from).name;
  url.password = password;
  return url.href;
}

async function apply(rendered: RenderedUsers, secrets: Record<string, string>): Promise<string> {
  const result = await applyUsers(rendered, secrets, management, GUEST);
  assert.equal(result.code, 0, `the users script failed: ${result.stderr}`);
  for (const u of rendered.users) if (!made.includes(u.name)) made.push(u.name);
  return result.stdout;
}

/** What the broker answers to `operation` on a channel of its own: the refusal's text (the test fails if it is allowed). */
async function refusal(model: ChannelModel, operation: (channel: Channel) => Promise<unknown>): Promise<string> {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  const err = await operation(channel).then(
    () => assert.fail('the broker allowed it'),
    (e: unknown) => e as { code?: number; message: string },
  );
  assert.equal(err.code, 403, err.message);
  assert.match(err.message, /ACCESS_REFUSED/);
  return err.message.replace(/^.*ACCESS_REFUSED/, 'ACCESS_REFUSED').replace(/"$/, '');
}

before(async () => {
  // A node of this suite's own (the monitoring suite may start and stop the shared one meanwhile).
  broker = await TestBroker.up(BROKER === 'rabbitmq4' ? 5688 : 5679);
  management = broker.management;
  const overview = await managementCall(management, GUEST, 'GET', 'overview').catch((err: Error) => ({
    status: 0,
    body: err.message,
  }));
  if (overview.status !== 200) {
    throw new Error(
      `no management API at ${management} (${overview.status}): a node left by an older run is on its port; ` +
        'stop it (TEST_BROKER_PORT=5679 bash scripts/test-broker.sh down, or RABBITMQ4_PORT=5688 for rabbitmq4) and run again',
    );
  }
  admin = await BrokerAdmin.open(broker.url);
  admin.track(queue);
  users = renderUsers(queue, prefix);
  await apply(users, passwords);
});

after(async () => {
  for (const name of made) await managementCall(management, GUEST, 'DELETE', `users/${encodeURIComponent(name)}`);
  await admin?.close();
  await broker?.stop();
});

describe('the users Job', () => {
  it('creates the role users with the tags and permissions of files/broker-roles.json, and again alike', async (t) => {
    const second = await apply(users, passwords);
    t.diagnostic(second.trim());
    for (const u of users.users) {
      const found = await managementCall(management, GUEST, 'GET', `users/${encodeURIComponent(u.name)}`);
      assert.equal(found.status, 200);
      const tags = (found.body as { tags: string | string[] }).tags;
      assert.deepEqual(Array.isArray(tags) ? tags : tags.split(',').filter(Boolean), u.tags);
      const permissions = await managementCall(
        management,
        GUEST,
        'GET',
        `permissions/%2F/${encodeURIComponent(u.name)}`,
      );
      if (u.permissions) {
        assert.equal(permissions.status, 200);
        const { configure, write, read } = permissions.body as Record<string, string>;
        assert.deepEqual({ configure, write, read }, u.permissions);
      } else {
        assert.equal(permissions.status, 404, `${u.name} has no permissions on the vhost`);
      }
    }
  });

  it('rotates a password: the new one is accepted, the old one refused', async () => {
    const rotated = { ...passwords, client: randomPassword() };
    await apply(users, rotated);
    const old = await amqp.connect(urlOf('client')).then(
      async (model) => {
        await model.close();
        return 'accepted';
      },
      (err: Error) => err.message,
    );
    assert.match(old, /ACCESS_REFUSED/);
    const model = await amqp.connect(urlOf('client', rotated.client));
    await model.close();
    await apply(users, passwords);
  });

  it('deletes the user of a role the release no longer has (KEDA turned off), and only that one', async () => {
    const withoutKeda = renderUsers(queue, prefix, ['autoscaling.keda.enabled=false']);
    const keda = users.users.find((u) => u.role === 'keda')?.name;
    assert.deepEqual(withoutKeda.retired, [keda]);
    const status = async (name: string) =>
      (await managementCall(management, GUEST, 'GET', `users/${encodeURIComponent(name)}`)).status;
    assert.equal(await status(keda ?? ''), 200);
    const out = await apply(withoutKeda, passwords);
    assert.match(out, new RegExp(`deleted ${keda}`));
    assert.equal(await status(keda ?? ''), 404);
    for (const u of withoutKeda.users) assert.equal(await status(u.name), 200, `${u.name} is kept`);
    // Again: nothing left to delete is no error.
    assert.doesNotMatch(await apply(withoutKeda, passwords), /deleted/);
    await apply(users, passwords);
    assert.equal(await status(keda ?? ''), 200);
  });

  it('says so, and exits 1, when the administrator is refused', async () => {
    const result = await applyUsers(users, passwords, management, { username: 'guest', password: 'wrong' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /HTTP 401 \(the administrator credentials are refused\)/);
  });
});

describe('least privilege', () => {
  it('the server declares and consumes its queues and answers a client that has only write on amq.default', async () => {
    await using server = await startServer(queue, { url: urlOf('server'), queueType: 'classic' });
    await using client = await connectClient(queue, { url: urlOf('client') });
    // Direct reply-to: the client consumes amq.rabbitmq.reply-to with no read permission at all.
    assert.equal((await client.call('fib', { n: 20 })).result, '6765');
    // An error reply travels the same way.
    await assert.rejects(
      client.call('fib', { n: -1 }),
      (err: unknown) => err instanceof RpcError && err.code !== 'TIMEOUT',
    );
    assert.equal(server.ready, true);
  });

  it('the client user is refused declaring, deleting, purging and consuming the work queue', async (t) => {
    await using server = await startServer(queue, { url: urlOf('server'), queueType: 'classic' });
    const model = await amqp.connect(urlOf('client'));
    try {
      const refused = {
        declare: await refusal(model, (ch) => ch.assertQueue(queue, { durable: true })),
        delete: await refusal(model, (ch) => ch.deleteQueue(queue)),
        purge: await refusal(model, (ch) => ch.purgeQueue(queue)),
        consume: await refusal(model, (ch) => ch.consume(queue, () => {})),
        consumeDlq: await refusal(model, (ch) => ch.consume(`${queue}.dlq`, () => {})),
        declareOther: await refusal(model, (ch) => ch.assertQueue(uniqueQueue('client-own'))),
        publishTopic: await refusal(model, async (ch) => {
          ch.publish('amq.topic', 'x', Buffer.from('x'));
          await ch.checkExchange('amq.topic');
        }),
      };
      for (const [what, message] of Object.entries(refused)) t.diagnostic(`client ${what}: ${message}`);
      assert.equal(server.ready, true);
    } finally {
      await model.close();
    }
    const api = await managementCall(
      management,
      { username: user('client').name, password: passwords.client ?? '' },
      'GET',
      'queues',
    );
    assert.equal(api.status, 401, 'the client user cannot log in to the management API');
  });

  it('the server user cannot touch other queues or users', async (t) => {
    const other = admin.track(uniqueQueue('someone-else'));
    await admin.channel.assertQueue(other, { durable: false });
    const model = await amqp.connect(urlOf('server'));
    try {
      const refused = {
        declareOther: await refusal(model, (ch) => ch.assertQueue(uniqueQueue('server-own'))),
        deleteOther: await refusal(model, (ch) => ch.deleteQueue(other)),
        consumeOther: await refusal(model, (ch) => ch.consume(other, () => {})),
        purgeOther: await refusal(model, (ch) => ch.purgeQueue(other)),
        bindOther: await refusal(model, (ch) => ch.bindQueue(other, 'amq.direct', 'x')),
      };
      for (const [what, message] of Object.entries(refused)) t.diagnostic(`server ${what}: ${message}`);
    } finally {
      await model.close();
    }
    const server = { username: user('server').name, password: passwords.server ?? '' };
    assert.equal((await managementCall(management, server, 'GET', 'users')).status, 401);
    assert.equal((await managementCall(management, server, 'PUT', `users/${prefix}-intruder`)).status, 401);
  });

  it('the KEDA user reads the queue depth over the management API and passively over AMQP, and can neither publish nor consume', async (t) => {
    const deep = admin.track(uniqueQueue('keda-depth'));
    await admin.channel.assertQueue(deep, { durable: false });
    for (let i = 0; i < 3; i++) admin.channel.sendToQueue(deep, Buffer.from(String(i)));
    // The chart's users for a release whose work queue is this one: KEDA's permissions name it.
    const rendered = renderUsers(deep, uniqueUserPrefix('lpk'));
    await apply(rendered, passwords);
    const keda = { username: user('keda', rendered).name, password: passwords.keda ?? '' };
    // KEDA's rabbitmq scaler (http) reads `messages` (ready + unacknowledged) of this one resource.
    let messages = -1;
    await waitFor(
      async () => {
        const answer = await managementCall(management, keda, 'GET', `queues/%2F/${encodeURIComponent(deep)}`);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        messages = Number((answer.body as { messages?: number }).messages);
        return messages === 3 || undefined;
      },
      20_000,
      'the management API to count the 3 messages',
    );
    t.diagnostic(`keda GET /api/queues/%2F/<queue>: 200, messages ${messages}`);
    const publish = await managementCall(management, keda, 'POST', 'exchanges/%2F/amq.default/publish', {
      properties: {},
      routing_key: deep,
      payload: 'x',
      payload_encoding: 'string',
    });
    t.diagnostic(`keda POST /api/exchanges/%2F/amq.default/publish: ${publish.status} ${JSON.stringify(publish.body)}`);
    assert.notEqual(publish.status, 200, 'publishing over the API is refused');
    assert.equal((await managementCall(management, keda, 'PUT', `users/${prefix}-intruder`)).status, 401);
    assert.equal((await managementCall(management, keda, 'GET', 'users')).status, 401);
    // The amqp trigger: a passive declare. 3.10 and 4.0 answer it with no permission on the
    // queue; 4.2.6+ and 4.3 want one (rabbitmq-server #16085, #16272): KEDA's is write on it.
    const model = await amqp.connect(urlOf('keda', passwords.keda, rendered));
    try {
      const check = await model.createChannel();
      assert.equal((await check.checkQueue(deep)).messageCount, 3);
      await check.close();
      const refused = {
        publish: await refusal(model, async (ch) => {
          ch.sendToQueue(deep, Buffer.from('x'));
          await ch.checkQueue(deep);
        }),
        consume: await refusal(model, (ch) => ch.consume(deep, () => {})),
        get: await refusal(model, (ch) => ch.get(deep)),
        declare: await refusal(model, (ch) => ch.assertQueue(uniqueQueue('keda-own'))),
        delete: await refusal(model, (ch) => ch.deleteQueue(deep)),
        // Its write on the queue allows a binding only with read on the exchange, which it lacks.
        bind: await refusal(model, (ch) => ch.bindQueue(deep, 'amq.direct', deep)),
      };
      for (const [what, message] of Object.entries(refused)) t.diagnostic(`keda ${what}: ${message}`);
    } finally {
      await model.close();
    }
    assert.equal(await admin.messageCount(deep), 3, 'nothing was published or taken');
  });
});

describe('every RPC path with the role users', () => {
  it('a classic queue republishes a redelivered request counted, and dead-letters it past the limit', async () => {
    const classic = admin.track(uniqueQueue('lp-classic'));
    const rendered = renderUsers(classic, uniqueUserPrefix('lpc'));
    await apply(rendered, passwords);
    await using proxy = await TcpProxy.start(Number(new URL(broker.url).port), '127.0.0.1');
    await using server = await startDoomedServer(classic, proxy.url(user('server', rendered).name, passwords.server));
    sendRequest(admin.channel, classic, '{}', DOOMED);
    await cutEachDelivery(server, () => proxy.cut(), 3);
    await admin.waitForCount(`${classic}.dlq`, 1, 15_000);
    const dead = await admin.channel.get(`${classic}.dlq`, { noAck: true });
    assert.ok(
      dead && dead.properties.headers?.['x-rpc-redeliveries'] === 2,
      'republished twice by the server user, then dead-lettered',
    );
  });

  it('the quarantine finds a reply that drops the connection and dead-letters it (3.x; 4.x confirms and drops that reply)', async () => {
    const quorum = admin.track(uniqueQueue('lp-poison'));
    const rendered = renderUsers(quorum, uniqueUserPrefix('lpq'));
    await apply(rendered, passwords);
    await using server = await startServer(quorum, {
      url: urlOf('server', passwords.server, rendered),
      queueType: 'quorum',
      deliveryLimit: 5,
    });
    await using client = await connectClient(quorum, {
      url: urlOf('client', passwords.client, rendered),
      timeoutMs: 15_000,
    });
    const poison = await poisonReplyTo(admin);
    server.handle('gate', answersAfter(300, 'open'));
    const gate = client.call('gate', {});
    await until(() => server.inFlight === 1, 'the gate to be in flight');
    sendRequest(admin.channel, quorum, '{"n":10}', { replyTo: poison, correlationId: 'poison', messageId: 'poison' });
    assert.equal((await client.call('fib', { n: 12 })).result, '144');
    assert.equal((await gate).result, 'open');
    if (closesOnUnknownReplyNode(admin.version)) {
      await admin.waitForCount(`${quorum}.dlq`, 1, 15_000);
      const dead = await admin.channel.get(`${quorum}.dlq`, { noAck: true });
      assert.ok(dead && dead.properties.messageId === 'poison', 'only the culprit is dead-lettered');
    } else {
      await until(() => server.inFlight === 0, 'every request to be settled');
      assert.equal(await admin.messageCount(`${quorum}.dlq`), 0);
    }
    assert.equal(server.ready, true);
  });
});
