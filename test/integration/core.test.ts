import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError, DIRECT_REPLY_TO, RemoteError, RpcError, RpcServer } from '@fib-rpc/rpc';
import { HEADER_DEADLINE, HEADER_VERSION, PROTOCOL_VERSION } from '../../packages/rpc/src/protocol.ts';
import { ReplyCounts } from '../../src/cmd/fib-rpc-client/reply-counts.ts';
import { AMQP_URL, BrokerAdmin, silentLog, uniqueQueue } from '../support/broker.ts';
import { TcpProxy } from '../support/proxy.ts';
import { declareWorkQueue } from '../support/queues.ts';
import { rawCall } from '../support/requests.ts';
import { answersAfter, connectClient, startServer } from '../support/rpc.ts';

let admin: BrokerAdmin;
before(async () => {
  admin = await BrokerAdmin.open();
});
after(async () => {
  await admin.close();
});

/** The work queue as the server declares it, with its dead-letter queue and no consumer. */
const idleQueue = (label: string) =>
  declareWorkQueue(admin.channel, admin.track(uniqueQueue(label)), { deadLetterQueue: true });

/** A handler that takes `ms` and records the most of its calls that ran at once. */
function concurrency(ms: number): { handler: () => Promise<string>; peak: number } {
  let running = 0;
  const probe = {
    peak: 0,
    handler: async () => {
      running++;
      probe.peak = Math.max(probe.peak, running);
      await sleep(ms);
      running--;
      return 'done';
    },
  };
  return probe;
}

describe('RPC core against the real broker', () => {
  it('answers a call over direct reply-to with a unique correlation id per call', async () => {
    const queue = admin.track(uniqueQueue('answer'));
    await using _server = await startServer(queue);
    await using client = await connectClient(queue);
    const [a, b] = await Promise.all([client.call('fib', { n: 30 }), client.call('fib', { n: 1000 })]);
    assert.equal(a.result, '832040');
    assert.equal(String(b.result).length, 209);
    assert.notEqual(a.correlationId, b.correlationId);
    assert.equal(client.pendingCalls, 0);
  });

  it('when the queue does not exist, the call fails at once with NO_RESPONDER', async () => {
    const replies = new ReplyCounts();
    await using client = await connectClient(uniqueQueue('absent'), { timeoutMs: 10_000, observer: replies });
    const started = Date.now();
    await assert.rejects(client.call('fib', { n: 5 }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, 'NO_RESPONDER');
      assert.equal(err.retryable, true);
      return true;
    });
    assert.ok(Date.now() - started < 2000, 'failed long before the 10 s timeout');
    assert.equal(replies.returnedRequests, 1);
  });

  it('when the queue has no consumer, the call fails with TIMEOUT after timeoutMs and the request expires', async () => {
    const queue = await idleQueue('idle');
    await using client = await connectClient(queue);
    const started = Date.now();
    await assert.rejects(client.call('fib', { n: 5 }, { timeoutMs: 300 }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, 'TIMEOUT');
      return true;
    });
    const waited = Date.now() - started;
    assert.ok(waited >= 290 && waited < 2000, `waited ${waited} ms`);
    // The message carried expiration = timeout: the broker drops it from the work queue.
    await admin.waitForCount(queue, 0, 5000);
    assert.equal(client.pendingCalls, 0);
  });

  it('each request carries expiration = its timeout and an absolute deadline header', async () => {
    const queue = await idleQueue('props');
    await using client = await connectClient(queue);
    const sent = Date.now();
    await assert.rejects(client.call('fib', { n: 7 }, { timeoutMs: 4000, signal: AbortSignal.timeout(200) }));
    const msg = await admin.channel.get(queue, { noAck: true });
    assert.ok(msg, 'the request is in the queue');
    assert.ok(
      String(msg.properties.replyTo).startsWith(`${DIRECT_REPLY_TO}.`),
      'the broker fills in our reply address',
    );
    assert.ok(Number(msg.properties.expiration) <= 4000 && Number(msg.properties.expiration) > 3500);
    const deadline = Number(msg.properties.headers?.[HEADER_DEADLINE]);
    assert.ok(Math.abs(deadline - (sent + 4000)) < 500, `deadline ${deadline - sent} ms after sending`);
    assert.equal(msg.properties.type, 'fib');
    assert.equal(msg.properties.contentType, 'application/json');
    assert.deepEqual(JSON.parse(msg.content.toString()), { n: 7 });
  });

  it('a handler error reaches the caller as a remote error with its type and message; the server keeps serving', async () => {
    const queue = admin.track(uniqueQueue('remote'));
    await using server = await startServer(queue);
    server.handle('explode', () => {
      throw new TypeError('kaboom in the handler');
    });
    server.handle('slow-explode', async () => {
      await sleep(5);
      throw new Error('async kaboom');
    });
    await using client = await connectClient(queue);
    await assert.rejects(client.call('explode', {}), (err: unknown) => {
      assert.ok(err instanceof RemoteError);
      assert.equal(err.code, 'HANDLER_ERROR');
      assert.equal(err.remoteType, 'TypeError');
      assert.equal(err.message, 'kaboom in the handler');
      return true;
    });
    await assert.rejects(client.call('slow-explode', {}), /async kaboom/);
    await assert.rejects(
      client.call('nope', {}),
      (err: unknown) => err instanceof RemoteError && err.code === 'UNKNOWN_METHOD',
    );
    assert.equal((await client.call('fib', { n: 10 })).result, '55');
  });

  it('the server validates too: an invalid request that bypasses the client gets an INVALID_REQUEST reply', async () => {
    const queue = admin.track(uniqueQueue('invalid'));
    await using _server = await startServer(queue);
    await using client = await connectClient(queue);
    for (const params of [{ n: -1 }, { n: 1.5 }, { n: 'abc' }, { n: 100_001 }, 'x', null]) {
      await assert.rejects(client.call('fib', params), (err: unknown) => {
        assert.ok(err instanceof RemoteError, String(err));
        assert.equal(err.code, 'INVALID_REQUEST');
        assert.equal(err.retryable, false);
        return true;
      });
    }
    const reply = await rawCall(admin, queue, '{not json', { contentType: 'application/json' });
    assert.equal(JSON.parse(reply.content.toString()).error.code, 'INVALID_REQUEST');
    assert.equal(reply.properties.type, 'error');
    assert.equal(reply.properties.correlationId, 'raw-1');
  });

  it('refuses a request of a newer major x-rpc-version with UNSUPPORTED_VERSION, naming both versions', async () => {
    const queue = admin.track(uniqueQueue('version'));
    await using _server = await startServer(queue);
    const newer = await rawCall(admin, queue, '{"n":30}', {
      contentType: 'application/json',
      headers: { [HEADER_VERSION]: PROTOCOL_VERSION + 1 },
    });
    assert.equal(newer.properties.type, 'error');
    const { error } = JSON.parse(newer.content.toString());
    assert.equal(error.code, 'UNSUPPORTED_VERSION');
    assert.equal(error.retryable, false);
    assert.match(error.message, new RegExp(`version ${PROTOCOL_VERSION + 1}.*version ${PROTOCOL_VERSION}`));
    // Its own version, or none at all (an older or a plain client), is served.
    for (const headers of [{ [HEADER_VERSION]: PROTOCOL_VERSION }, {}]) {
      const reply = await rawCall(admin, queue, '{"n":30}', { contentType: 'application/json', headers });
      assert.deepEqual(JSON.parse(reply.content.toString()), { result: '832040' });
    }
  });

  it('talks to a plain-text client like the classic tutorial: body "30" in, "832040" out', async () => {
    const queue = admin.track(uniqueQueue('plain'));
    await using _server = await startServer(queue);
    const reply = await rawCall(admin, queue, '30', { contentType: 'text/plain' });
    assert.equal(reply.content.toString(), '832040');
    const bare = await rawCall(admin, queue, '30', {});
    assert.equal(bare.content.toString(), '832040');
  });

  it('a malformed message without reply_to is dead-lettered to <queue>.dlq while the server keeps serving', async () => {
    const queue = admin.track(uniqueQueue('poison'));
    await using _server = await startServer(queue);
    await using client = await connectClient(queue);
    admin.channel.sendToQueue(queue, Buffer.from('\u0000garbage'), {});
    // A reply_to but no correlation_id: no caller could match a reply, so it is dead-lettered too.
    admin.channel.sendToQueue(queue, Buffer.from('{"n":5}'), { contentType: 'application/json', replyTo: 'nobody' });
    await admin.waitForCount(`${queue}.dlq`, 2);
    assert.equal(await admin.messageCount(queue), 0, 'nothing requeued');
    assert.equal((await client.call('fib', { n: 12 })).result, '144');
  });

  it('duplicate replies and replies with unknown correlation ids are dropped and counted', async () => {
    const queue = await idleQueue('dup');
    // A misbehaving server: answers each request twice, plus once with a foreign id.
    await using channel = await admin.openChannel();
    await channel.consume(queue, (msg) => {
      if (!msg) return;
      const reply = (id: string) =>
        channel.sendToQueue(msg.properties.replyTo as string, Buffer.from('{"result":"1"}'), { correlationId: id });
      reply(msg.properties.correlationId as string);
      reply(msg.properties.correlationId as string);
      reply('not-one-of-ours');
      channel.ack(msg);
    });
    const replies = new ReplyCounts();
    await using client = await connectClient(queue, { observer: replies });
    const first = await client.call('fib', { n: 1 });
    const second = await client.call('fib', { n: 2 });
    assert.equal(first.result, '1');
    assert.equal(second.result, '1');
    await sleep(200);
    assert.equal(replies.duplicate, 2);
    assert.equal(replies.unknown, 2);
    assert.equal(client.pendingCalls, 0);
  });

  it('a reply to a call that already timed out is counted as late, not delivered', async () => {
    const queue = await idleQueue('late');
    await using channel = await admin.openChannel();
    await channel.consume(queue, (msg) => {
      if (!msg) return;
      setTimeout(() => {
        channel.sendToQueue(msg.properties.replyTo as string, Buffer.from('{"result":"1"}'), {
          correlationId: msg.properties.correlationId as string,
        });
        channel.ack(msg);
      }, 300);
    });
    const replies = new ReplyCounts();
    await using client = await connectClient(queue, { observer: replies });
    await assert.rejects(client.call('fib', { n: 1 }, { timeoutMs: 100 }), /no reply within 100 ms/);
    await sleep(400);
    assert.equal(replies.late, 1);
  });

  it('an AbortSignal cancels a call and frees its entry', async () => {
    const queue = await idleQueue('abort');
    await using client = await connectClient(queue);
    const controller = new AbortController();
    const call = client.call('fib', { n: 5 }, { signal: controller.signal });
    await sleep(50);
    assert.equal(client.pendingCalls, 1);
    controller.abort(new Error('user pressed ^C'));
    await assert.rejects(call, (err: unknown) => err instanceof AbortedError && /user pressed/.test(err.message));
    assert.equal(client.pendingCalls, 0);
    await assert.rejects(client.call('fib', { n: 5 }, { signal: AbortSignal.abort() }), AbortedError);
  });

  it('timed-out calls leave no correlation entry and no timer behind', async () => {
    const queue = await idleQueue('leak');
    await using client = await connectClient(queue, { maxInFlight: 100_000 });
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const calls = Array.from({ length: 5000 }, () =>
      client.call('fib', { n: 1 }, { timeoutMs: 200 }).catch((e: RpcError) => e.code),
    );
    const codes = await Promise.all(calls);
    assert.ok(codes.every((code) => code === 'TIMEOUT'));
    assert.equal(client.pendingCalls, 0);
    const timersAfter = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    assert.ok(timersAfter <= timersBefore + 2, `timers before ${timersBefore}, after ${timersAfter}`);
  });

  it('prefetch bounds the work one server does at once', async () => {
    const queue = admin.track(uniqueQueue('prefetch'));
    await using server = await startServer(queue, { prefetch: 3 });
    const slow = concurrency(50);
    server.handle('slow', slow.handler);
    await using client = await connectClient(queue);
    await Promise.all(Array.from({ length: 20 }, () => client.call('slow', {})));
    assert.equal(slow.peak, 3);
  });

  it('maxInFlight bounds the calls one client has outstanding; the others wait their turn', async () => {
    const queue = admin.track(uniqueQueue('inflight'));
    await using server = await startServer(queue, { prefetch: 50 });
    const slow = concurrency(30);
    server.handle('slow', slow.handler);
    await using client = await connectClient(queue, { maxInFlight: 2 });
    const results = await Promise.all(Array.from({ length: 10 }, () => client.call('slow', {})));
    assert.equal(results.length, 10);
    assert.equal(slow.peak, 2);
  });

  it('stop() drains: in-flight requests are answered before the server closes', async () => {
    const queue = admin.track(uniqueQueue('drain'));
    // Not `using`: the test stops it itself, and what stop() returns is the point.
    const server = await startServer(queue, { prefetch: 10 });
    server.handle('slow', answersAfter(300, 'finished'));
    await using client = await connectClient(queue);
    const calls = Array.from({ length: 8 }, () => client.call('slow', {}));
    await sleep(100);
    assert.equal(server.inFlight, 8);
    const stopping = server.stop();
    assert.equal(server.ready, false, 'not ready while draining');
    const results = await Promise.all(calls);
    assert.deepEqual(
      results.map((r) => r.result),
      Array(8).fill('finished'),
    );
    assert.deepEqual(await stopping, { drained: true, abandoned: 0 });
    assert.equal(await admin.messageCount(queue), 0);
  });

  it('when the connection drops, calls in flight fail at once as retryable CONNECTION_LOST and the client reconnects', async () => {
    const queue = admin.track(uniqueQueue('lost'));
    await using server = await startServer(queue);
    server.handle('slow', answersAfter(1500, 'late'));
    await using proxy = await TcpProxy.start();
    const seen: boolean[] = [];
    const observer = { connected: (up: boolean) => seen.push(up) };
    await using client = await connectClient(queue, { url: proxy.url(), timeoutMs: 10_000, observer });
    const call = client.call('slow', {});
    await sleep(200);
    const cutAt = Date.now();
    proxy.cut();
    await assert.rejects(call, (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, 'CONNECTION_LOST');
      assert.equal(err.retryable, true);
      return true;
    });
    assert.ok(Date.now() - cutAt < 1000, 'failed promptly, not at the timeout');
    // The next call waits for the reconnection and succeeds.
    assert.equal((await client.call('fib', { n: 20 })).result, '6765');
    // The channel and then the connection close: one loss, reported once.
    assert.deepEqual(seen, [true, false, true]);
  });

  it('with retries, a call survives a dropped connection', async () => {
    const queue = admin.track(uniqueQueue('retry'));
    await using server = await startServer(queue);
    server.handle('slow', answersAfter(300, 'ok'));
    await using proxy = await TcpProxy.start();
    await using client = await connectClient(queue, { url: proxy.url(), retries: 3, retryBaseMs: 50 });
    const call = client.call('slow', {});
    await sleep(100);
    proxy.cut();
    const { result, attempts } = await call;
    assert.equal(result, 'ok');
    assert.equal(attempts, 2);
  });

  it('the server reconnects after its connection drops, re-declares and serves again', async () => {
    const queue = admin.track(uniqueQueue('srv-reconnect'));
    await using proxy = await TcpProxy.start();
    // Built by hand: its "fib" is a stub, where startServer would register the real one.
    await using server = new RpcServer({
      url: proxy.url(),
      heartbeatS: 5,
      queue,
      dlqMaxLength: 0,
      dlqTtlMs: 0,
      prefetch: 4,
      drainTimeoutMs: 5000,
      defaultMethod: 'fib',
      log: silentLog,
    });
    server.handle('fib', () => 'served');
    await server.start();
    await using client = await connectClient(queue);
    assert.equal((await client.call('fib', {})).result, 'served');
    proxy.cut();
    await sleep(50);
    const { result } = await client.call('fib', {}, { timeoutMs: 10_000 });
    assert.equal(result, 'served');
    assert.equal(server.ready, true);
    assert.equal(proxy.connections, 1, 'the server opened a new connection through the proxy');
  });

  it('refuses a request larger than maxRequestBytes before parsing it', async () => {
    const queue = admin.track(uniqueQueue('big'));
    await using _server = await startServer(queue, { maxRequestBytes: 1024 });
    const reply = await rawCall(admin, queue, JSON.stringify({ n: 1, pad: 'x'.repeat(2000) }), {
      contentType: 'application/json',
    });
    const { error } = JSON.parse(reply.content.toString());
    assert.equal(error.code, 'INVALID_REQUEST');
    assert.match(error.message, /limit is 1024/);
  });

  it('reports the broker as unreachable with its host and without the password', async () => {
    await assert.rejects(connectClient('q', { url: 'amqp://user:hunter2@127.0.0.1:1' }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, 'CONNECTION_FAILED');
      assert.match(err.message, /127\.0\.0\.1:1/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
    assert.ok(AMQP_URL);
  });
});
