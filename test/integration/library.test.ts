import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  defineMethod,
  InvalidRequestError,
  implement,
  RemoteError,
  RpcClient,
  RpcServer,
  SERVER_DEFAULTS,
  workQueueArguments,
} from '@fib-rpc/rpc';
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
    // As a user would: the url, the queue and the methods; every other option is the library's default.
    await using server = new RpcServer({
      url: AMQP_URL,
      queue,
      log: silentLog,
      methods: [
        implement(greet, ({ name, times }) => {
          const text = `hello ${name}`.repeat(times);
          return { text, length: text.length };
        }),
      ],
    });
    await server.start();
    await using client = await new RpcClient({ url: AMQP_URL, queue, log: silentLog }).connect();

    const { result } = await client.call(greet, { name: 'ada', times: 2 });
    // Typed: no cast is needed to read the result's fields.
    assert.equal(result.text, 'hello adahello ada');
    assert.equal(result.length, 18);

    await assert.rejects(
      client.call('greet', { name: 'ada', times: 0 }),
      (err: unknown) => err instanceof RemoteError && err.code === 'INVALID_REQUEST' && /times/.test(err.message),
    );
    // The queue is the library's, declared as its helpers say.
    assert.deepEqual(workQueueArguments({ ...SERVER_DEFAULTS, queue })['x-queue-type'], 'classic');
  });
});
