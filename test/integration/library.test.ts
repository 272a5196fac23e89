import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defineMethod, InvalidRequestError, RemoteError, RpcClient, RpcServer, workQueueArguments } from '@fib-rpc/rpc';
import { AMQP_URL, BrokerAdmin, silentLog, uniqueQueue } from '../support/broker.ts';

/** A method of a service other than Fibonacci, defined here alone, through the public entry. */
interface Greeting {
  name: string;
  times: number;
}
const greet = defineMethod<Greeting, { text: string; length: number }>({
  name: 'greet',
  parse(params) {
    const { name, times } = (params ?? {}) as Partial<Greeting>;
    if (typeof name !== 'string' || name === '') throw new InvalidRequestError('name must be a non-empty string');
    if (!Number.isInteger(times) || (times as number) < 1) throw new InvalidRequestError('times must be >= 1');
    return { name, times: times as number };
  },
});

describe('the core as a library', () => {
  it('serves and calls a method defined outside the Fibonacci service, typed end to end', async () => {
    await using admin = await BrokerAdmin.open();
    const queue = admin.track(uniqueQueue('greeter'));
    const common = {
      serviceName: 'greeter',
      url: AMQP_URL,
      heartbeatS: 5,
      connectTimeoutMs: 5000,
      queue,
      log: silentLog,
    };
    await using server = new RpcServer({
      ...common,
      queueType: 'classic',
      deliveryLimit: 5,
      dlqMaxLength: 100,
      dlqTtlMs: 60_000,
      prefetch: 8,
      maxRequestBytes: 4096,
      drainTimeoutMs: 1000,
      defaultMethod: greet.name,
    }).implement(greet, ({ name, times }) => {
      const text = `hello ${name}`.repeat(times);
      return { text, length: text.length };
    });
    await server.start();
    await using client = await RpcClient.connect({ ...common, timeoutMs: 5000, retries: 0, maxInFlight: 16 });

    const { result } = await client.call(greet, { name: 'ada', times: 2 });
    // Typed: no cast is needed to read the result's fields.
    assert.equal(result.text, 'hello adahello ada');
    assert.equal(result.length, 18);

    await assert.rejects(
      client.call('greet', { name: 'ada', times: 0 }),
      (err: unknown) => err instanceof RemoteError && err.code === 'INVALID_REQUEST' && /times/.test(err.message),
    );
    // The queue is the library's, declared as its helpers say.
    assert.deepEqual(workQueueArguments({ queue, queueType: 'classic', deliveryLimit: 5 })['x-queue-type'], 'classic');
  });
});
