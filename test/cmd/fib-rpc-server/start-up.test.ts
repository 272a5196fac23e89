import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionFailedError, QueueMismatchError, silentLogger } from '@fib-rpc/rpc';
import { deadLetterQueueKept } from '../../../packages/rpc/src/server/queues.ts';
import { loadConfig } from '../../../src/cmd/common/config.ts';
import { serverOptions } from '../../../src/cmd/common/rpc-options.ts';
import { startupFailure } from '../../../src/cmd/fib-rpc-server/start-up.ts';

/** What RabbitMQ 3.10+ says when a queue exists with other arguments, as amqplib reports it. */
const brokerSays = (queue: string, detail: string) =>
  `Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - inequivalent arg ${detail.replace('QUEUE', queue)}"`;

describe('start-up failures', () => {
  const config = loadConfig({ RPC_QUEUE: 'work' });

  it('reads the argument and both values from the broker message, in each of its forms', () => {
    const durable = new QueueMismatchError(
      'work',
      brokerSays('work', `'durable' for queue 'QUEUE' in vhost '/': received 'true' but current is 'false'`),
    );
    assert.deepEqual([durable.argument, durable.declared, durable.current], ['durable', 'true', 'false']);
    const type = new QueueMismatchError(
      'work',
      brokerSays(
        'work',
        `'x-queue-type' for queue 'QUEUE' in vhost '/': received the value 'quorum' of type 'longstr' but current is none`,
      ),
    );
    assert.deepEqual([type.argument, type.declared, type.current], ['x-queue-type', 'quorum', undefined]);
    assert.equal(type.retryable, false);
  });

  it('names the setting that keeps the queue as it is, when one exists', () => {
    const limit = new QueueMismatchError(
      'work',
      brokerSays(
        'work',
        `'x-delivery-limit' for queue 'QUEUE' in vhost '/': received the value '5' of type 'byte' but current is the value '20' of type 'byte'`,
      ),
    );
    const { code, message } = startupFailure(limit, config);
    assert.equal(code, 2);
    assert.match(
      message,
      /x-delivery-limit is "20" on the broker, "5" here\. To use it as it is, set RPC_DELIVERY_LIMIT=20;/,
    );
  });

  it('passes on a broker message of another shape whole', () => {
    const odd = new QueueMismatchError('work', 'PRECONDITION_FAILED - something new');
    const { code, message } = startupFailure(odd, config);
    assert.equal(code, 2);
    assert.match(message, /^queue "work" already exists with other arguments: PRECONDITION_FAILED - something new\./);
    assert.match(message, /delete the queue "work"/);
  });

  it('names AMQP_STARTUP_TIMEOUT_MS when the broker did not come in time', () => {
    const late = new ConnectionFailedError('gave up on the broker after 3 attempts in 1.0 s; the last: refused');
    const limited = loadConfig({ AMQP_STARTUP_TIMEOUT_MS: '1000' });
    const { code, message } = startupFailure(late, limited);
    assert.equal(code, 6);
    assert.match(message, /AMQP_STARTUP_TIMEOUT_MS \(amqp\.startupTimeoutMs\) = 1000 ms/);
  });
});

describe('a dead-letter queue that exists with other arguments', () => {
  const unbounded = (queue: string) =>
    new QueueMismatchError(
      queue,
      brokerSays(
        queue,
        `'x-max-length' for queue 'QUEUE' in vhost '/': received the value '100000' of type 'signedint' but current is none`,
      ),
    );

  it('is kept with a warning naming what differs, the bounds not applied (as the program names them), the policy command and deletion', () => {
    // The names the server program gives the core: its env vars.
    const { optionNames } = serverOptions(loadConfig({}), { defaultMethod: 'fib', log: silentLogger });
    const message = deadLetterQueueKept(
      unbounded('rpc_queue.dlq'),
      { dlqMaxLength: 100000, dlqTtlMs: 604800000 },
      '/',
      optionNames,
    );
    assert.ok(
      message.startsWith(
        'queue "rpc_queue.dlq" already exists with other arguments: x-max-length is not set on the broker, "100000" here.',
      ),
      message,
    );
    assert.match(message, /RPC_DLQ_MAX_LENGTH \(100000\) and RPC_DLQ_TTL_MS \(604800000\) are not applied/);
    assert.ok(
      message.includes(
        `rabbitmqctl set_policy --apply-to queues rpc_queue.dlq-bounds '^rpc_queue\\.dlq$' '{"max-length":100000,"message-ttl":604800000}'`,
      ),
      message,
    );
    assert.match(message, /its messages are lost.*rabbitmqctl delete_queue rpc_queue\.dlq/);
  });

  it('puts only the bounds that are set in the policy (named as the library options by default)', () => {
    const message = deadLetterQueueKept(unbounded('work.dlq'), { dlqMaxLength: 0, dlqTtlMs: 60000 });
    assert.match(message, /dlqTtlMs \(60000\) is not applied/);
    assert.doesNotMatch(message, /dlqMaxLength|RPC_DLQ|max-length"/);
    assert.ok(message.includes(`'{"message-ttl":60000}'`), message);
  });

  it('offers no policy when no bound is set', () => {
    const type = new QueueMismatchError(
      'work.dlq',
      brokerSays(
        'work.dlq',
        `'x-queue-type' for queue 'QUEUE' in vhost '/': received 'quorum' but current is 'classic'`,
      ),
    );
    const message = deadLetterQueueKept(type, { dlqMaxLength: 0, dlqTtlMs: 0 });
    assert.match(message, /x-queue-type is "classic" on the broker, "quorum" here\. The server uses it as it is\./);
    assert.doesNotMatch(message, /set_policy|not applied/);
    assert.match(message, /rabbitmqctl delete_queue work\.dlq/);
  });

  it('quotes names for the shell, escapes them for the pattern and names a vhost other than /', () => {
    const queue = "it's (a) queue+.dlq";
    const message = deadLetterQueueKept(unbounded(queue), { dlqMaxLength: 10, dlqTtlMs: 0 }, 'prod');
    const pattern = String.raw`^it's \(a\) queue\+\.dlq$`;
    assert.ok(new RegExp(pattern).test(queue) && !new RegExp(pattern).test(`x${queue}`));
    const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`;
    assert.ok(
      message.includes(
        `rabbitmqctl set_policy -p prod --apply-to queues ${quote(`${queue}-bounds`)} ${quote(pattern)} '{"max-length":10}'`,
      ),
      message,
    );
    assert.ok(message.includes(`rabbitmqctl delete_queue -p prod ${quote(queue)}`), message);
  });
});
