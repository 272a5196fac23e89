import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { ConnectionFailedError, QueueMismatchError } from '../../src/rpc/errors.ts';
import { startupFailure } from '../../src/server/start-up.ts';

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
    const ttl = new QueueMismatchError(
      'work.dlq',
      brokerSays(
        'work.dlq',
        `'x-message-ttl' for queue 'QUEUE' in vhost '/': received '604800000' but current is '60000'`,
      ),
    );
    assert.match(startupFailure(ttl, config).message, /set RPC_DLQ_TTL_MS=60000;/);
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
