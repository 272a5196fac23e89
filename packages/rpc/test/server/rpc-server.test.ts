import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Outcome, PROTOCOL_VERSION } from '../../src/index.ts';
import { HEADER_DEADLINE, HEADER_VERSION } from '../../src/protocol.ts';
import { HEADER_REDELIVERIES } from '../../src/server/redelivery-count.ts';
import { delivery } from '../support/fake-channel.ts';
import { directReplyTo, requestProperties, serverOnFake, settle } from './server-on-fake-channel.ts';

/** An async handler the test finishes when it likes: work still in flight meanwhile. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  const handler = async (params: unknown) => {
    await opened;
    return params;
  };
  return { open, handler };
}

/** Outcomes the server reported, by outcome. */
function outcomes() {
  const seen: Outcome[] = [];
  return { seen, observer: { settled: (_method: string, outcome: Outcome) => void seen.push(outcome) } };
}

const body = (published: { content: Buffer } | undefined) => JSON.parse(published?.content.toString() ?? 'null');

describe('RpcServer admission (fake channel)', () => {
  it('answers a request on its reply_to with its correlation id, then acks it', async () => {
    const { server, channel } = await serverOnFake();
    server.handle('echo', (params) => params);
    const msg = delivery('{"say":"hi"}', requestProperties('c-1'));
    channel.deliver(msg);
    assert.deepEqual(channel.operations, [
      { op: 'publish', routingKey: 'replies' },
      { op: 'ack', deliveryTag: msg.fields.deliveryTag },
    ]);
    const [reply] = channel.published;
    assert.deepEqual(body(reply), { result: { say: 'hi' } });
    assert.equal(reply?.options.correlationId, 'c-1');
    assert.equal(reply?.options.type, 'result');
    await server.stop();
  });

  it('refuses an unknown method, an unreadable body and a newer version with error replies, and acks them', async () => {
    const { seen, observer } = outcomes();
    const { server, channel } = await serverOnFake({ observer });
    let calls = 0;
    server.handle('echo', () => calls++);
    channel.deliver(delivery('{}', requestProperties('unknown', { type: 'nope' })));
    channel.deliver(delivery('{nope', requestProperties('unreadable')));
    channel.deliver(
      delivery('{}', requestProperties('newer', { headers: { [HEADER_VERSION]: PROTOCOL_VERSION + 1 } })),
    );
    assert.deepEqual(
      channel.published.map((p) => body(p).error.code),
      ['UNKNOWN_METHOD', 'INVALID_REQUEST', 'UNSUPPORTED_VERSION'],
    );
    assert.equal(channel.operations.filter((o) => o.op === 'ack').length, 3);
    assert.equal(calls, 0, 'no handler ran');
    assert.deepEqual(seen, ['invalid', 'invalid', 'invalid']);
    await server.stop();
  });

  it('dead-letters a request that has nobody to answer (no reply_to), without a reply', async () => {
    const { seen, observer } = outcomes();
    const { server, channel } = await serverOnFake({ observer });
    server.handle('echo', (params) => params);
    const msg = delivery('{}', requestProperties('c-1', { replyTo: undefined }));
    channel.deliver(msg);
    assert.deepEqual(channel.operations, [{ op: 'nack', deliveryTag: msg.fields.deliveryTag, requeue: false }]);
    assert.deepEqual(seen, ['dead_lettered']);
    await server.stop();
  });
});

describe('RpcServer and expired requests (fake channel)', () => {
  it('acks a request whose x-deadline has passed without computing or answering it', async () => {
    const { seen, observer } = outcomes();
    const { server, channel } = await serverOnFake({ observer });
    let calls = 0;
    server.handle('echo', () => calls++);
    const msg = delivery('{}', requestProperties('late', { headers: { [HEADER_DEADLINE]: Date.now() - 1 } }));
    channel.deliver(msg);
    assert.equal(calls, 0);
    assert.deepEqual(channel.operations, [{ op: 'ack', deliveryTag: msg.fields.deliveryTag }]);
    assert.deepEqual(seen, ['expired']);
    assert.equal(server.inFlight, 0);
    await server.stop();
  });
});

describe('RpcServer redelivery counting on a classic queue (fake channel)', () => {
  it('republishes a redelivered request at the tail with its count one higher, acks it and does not serve it yet', async () => {
    const { server, channel } = await serverOnFake({ deliveryLimit: 3 });
    let calls = 0;
    server.handle('echo', () => calls++);
    const msg = delivery('{"n":1}', requestProperties('again'), true);
    channel.deliver(msg);
    assert.equal(calls, 0);
    assert.deepEqual(channel.operations, [
      { op: 'publish', routingKey: 'work' },
      { op: 'ack', deliveryTag: msg.fields.deliveryTag },
    ]);
    const [requeued] = channel.published;
    assert.equal(requeued?.options.headers?.[HEADER_REDELIVERIES], 1);
    assert.equal(requeued?.options.correlationId, 'again');
    assert.equal(requeued?.content.toString(), '{"n":1}');
    await server.stop();
  });

  it('dead-letters a request that came back more often than the delivery limit', async () => {
    const { seen, observer } = outcomes();
    const { server, channel } = await serverOnFake({ deliveryLimit: 3, observer });
    server.handle('echo', (params) => params);
    const props = requestProperties('poison');
    const msg = delivery('{}', { ...props, headers: { ...props.headers, [HEADER_REDELIVERIES]: 3 } }, true);
    channel.deliver(msg);
    assert.deepEqual(channel.operations, [{ op: 'nack', deliveryTag: msg.fields.deliveryTag, requeue: false }]);
    assert.deepEqual(seen, ['dead_lettered']);
    await server.stop();
  });

  it('leaves the counting to a quorum queue: a redelivered request is served as it is', async () => {
    const { server, channel } = await serverOnFake({ queueType: 'quorum' });
    server.handle('echo', () => 'served');
    channel.deliver(delivery('{}', requestProperties('again'), true));
    assert.deepEqual(body(channel.published[0]), { result: 'served' });
    assert.equal(channel.published[0]?.routingKey, 'replies');
    await server.stop();
  });
});

describe('RpcServer reply quarantine (fake channel)', () => {
  it('answers a redelivered request over direct reply-to through a connection of its own, and acks after the confirm', async () => {
    const { server, channel, connections } = await serverOnFake();
    server.handle('echo', () => 'quarantined');
    const replyTo = directReplyTo();
    const props = requestProperties('seen-before', { replyTo });
    // Counted by an earlier server (not flagged), so it is served now, not counted again.
    const msg = delivery('{}', { ...props, headers: { ...props.headers, [HEADER_REDELIVERIES]: 1 } });
    channel.deliver(msg);
    await settle();
    await settle();
    assert.equal(connections.length, 2, 'a second connection, for quarantined replies');
    const confirmChannel = connections[1]?.channels[0];
    assert.equal(confirmChannel?.published[0]?.routingKey, replyTo);
    assert.deepEqual(body(confirmChannel?.published[0]), { result: 'quarantined' });
    assert.deepEqual(
      channel.operations,
      [{ op: 'ack', deliveryTag: msg.fields.deliveryTag }],
      'acked, not replied, here',
    );
    await server.stop();
  });

  it('answers a first delivery over direct reply-to on its own channel, without the quarantine', async () => {
    const { server, channel, connections } = await serverOnFake();
    server.handle('echo', () => 'direct');
    channel.deliver(delivery('{}', requestProperties('fresh', { replyTo: directReplyTo() })));
    assert.equal(connections.length, 1);
    assert.deepEqual(body(channel.published[0]), { result: 'direct' });
    assert.equal(channel.published[0]?.options.mandatory, false, 'never mandatory over direct reply-to');
    await server.stop();
  });
});

describe('RpcServer drain (fake channel)', () => {
  it('stop() cancels the consumer, waits for the work in flight, answers and acks it, then closes', async () => {
    const { server, channel } = await serverOnFake();
    const work = gate();
    server.handle('echo', work.handler);
    const msg = delivery('{"n":7}', requestProperties('in-flight'));
    channel.deliver(msg);
    assert.equal(server.inFlight, 1);
    let stopped: { drained: boolean; abandoned: number } | undefined;
    const stopping = server.stop().then((result) => {
      stopped = result;
    });
    await settle();
    assert.equal(stopped, undefined, 'still draining');
    assert.equal(server.ready, false);
    assert.deepEqual(channel.operations, [{ op: 'cancel' }]);
    work.open();
    await stopping;
    assert.deepEqual(stopped, { drained: true, abandoned: 0 });
    assert.deepEqual(channel.operations, [
      { op: 'cancel' },
      { op: 'publish', routingKey: 'replies' },
      { op: 'ack', deliveryTag: msg.fields.deliveryTag },
      { op: 'close' },
    ]);
  });

  it('gives up after drainTimeoutMs and reports what it abandoned (back to the queue unacked)', async () => {
    const { server, channel } = await serverOnFake({ drainTimeoutMs: 50 });
    server.handle('echo', gate().handler);
    channel.deliver(delivery('{}', requestProperties('stuck')));
    assert.deepEqual(await server.stop(), { drained: false, abandoned: 1 });
    assert.ok(!channel.operations.some((o) => o.op === 'ack'));
  });
});

describe('RpcServer robustness (fake channel)', () => {
  const unhandled: unknown[] = [];
  const record = (err: unknown) => unhandled.push(err);
  before(() => process.on('unhandledRejection', record));
  after(() => process.off('unhandledRejection', record));

  it('an observer that throws behind an async handler is logged and counted, and the request still answered', async () => {
    const failedHooks: string[] = [];
    const observer = {
      settled() {
        throw new Error('metrics bug');
      },
      async inFlight() {
        throw new Error('async metrics bug');
      },
      hookFailed(hook: string) {
        failedHooks.push(hook);
      },
    };
    const { server, channel, logs } = await serverOnFake({ observer });
    server.handle('echo', async () => 'still answered');
    const msg = delivery('{}', requestProperties('c-1'));
    channel.deliver(msg);
    await settle();
    await settle();
    assert.deepEqual(body(channel.published[0]), { result: 'still answered' });
    assert.deepEqual(channel.operations.at(-1), { op: 'ack', deliveryTag: msg.fields.deliveryTag });
    assert.equal(server.inFlight, 0);
    // inFlight twice (up, down), settled once.
    assert.equal(server.hookFailures, 3);
    assert.deepEqual(failedHooks.sort(), ['inFlight', 'inFlight', 'settled']);
    assert.ok(logs.some((l) => l.hook === 'settled' && l.err === 'metrics bug' && l.level === 40));
    await server.stop();
    assert.deepEqual(unhandled, []);
  });

  it('a reply whose channel closed under it is logged, not thrown: the redelivery takes over', async () => {
    const { seen, observer } = outcomes();
    const { server, channel, logs } = await serverOnFake({ observer });
    const work = gate();
    server.handle('echo', work.handler);
    channel.deliver(delivery('{}', requestProperties('c-1')));
    // The channel dies with the request in flight, before amqplib has said so.
    channel.broken = true;
    work.open();
    await settle();
    await settle();
    assert.equal(server.inFlight, 0, 'settled all the same');
    assert.deepEqual(seen, ['ok'], 'counted as decided, not as dead-lettered: the broker redelivers it');
    assert.equal(channel.published.length, 0);
    assert.ok(logs.some((l) => String(l.msg).includes('channel') && l.err === 'Channel closed'));
    channel.broken = false;
    await server.stop();
    assert.deepEqual(unhandled, []);
  });

  it('an ack that fails after the reply went out is logged, not thrown', async () => {
    const { server, channel, logs } = await serverOnFake();
    server.handle('echo', () => 'ok');
    const ack = channel.ack.bind(channel);
    channel.ack = () => {
      throw new Error('Channel closed');
    };
    channel.deliver(delivery('{}', requestProperties('c-1')));
    assert.equal(channel.published.length, 1);
    assert.equal(server.inFlight, 0);
    assert.ok(logs.some((l) => l.operation === 'ack' && l.err === 'Channel closed'));
    channel.ack = ack;
    await server.stop();
  });
});
