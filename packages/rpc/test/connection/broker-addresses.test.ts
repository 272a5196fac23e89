import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  describeBroker,
  describeBrokers,
  parseBrokerUrls,
  withHeartbeat,
} from '../../src/connection/broker-addresses.ts';

describe('broker addresses', () => {
  it('splits a list where the next URL begins, keeping commas inside a password', () => {
    assert.deepEqual(parseBrokerUrls('amqp://u:p,w@a:5672, amqps://u:p@b:5671/vh ,'), [
      'amqp://u:p,w@a:5672',
      'amqps://u:p@b:5671/vh',
    ]);
    assert.deepEqual(parseBrokerUrls('amqp://a'), ['amqp://a']);
  });

  it('describes brokers without credentials', () => {
    assert.equal(describeBroker('amqp://u:secret@rabbit-0:5672/prod'), 'amqp://rabbit-0:5672/prod');
    assert.equal(describeBrokers('amqp://u:s@a:1,amqp://u:s@b:2'), 'amqp://a:1, amqp://b:2');
    assert.equal(describeBroker('::'), '<invalid broker url>');
  });

  it('adds the heartbeat unless the URL sets one', () => {
    assert.equal(new URL(withHeartbeat('amqp://a', 5)).searchParams.get('heartbeat'), '5');
    assert.equal(new URL(withHeartbeat('amqp://a?heartbeat=9', 5)).searchParams.get('heartbeat'), '9');
  });
});
