import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startAttempt } from '../../src/client/attempt.ts';
import { Publisher } from '../../src/client/publisher.ts';
import { AbortedError, ConnectionLostError, DIRECT_REPLY_TO, TimeoutError } from '../../src/index.ts';
import { FakeChannel } from '../support/fake-channel.ts';

const attempt = (id: string, timeoutMs = 1000, signal?: AbortSignal) =>
  startAttempt(id, 'fib', Buffer.from('{"n":1}'), timeoutMs, signal, undefined);

describe('Publisher', () => {
  it('publishes a request with its reply address, deadline and expiration', () => {
    const publisher = new Publisher('work', 4);
    const channel = new FakeChannel();
    publisher.attach(channel.asChannel());
    const request = attempt('id-1', 1000);
    assert.equal(publisher.takeSlotNow(), true);
    publisher.publish(request, 750);
    const [sent] = channel.published;
    assert.equal(sent?.routingKey, 'work');
    assert.equal(sent?.options.replyTo, DIRECT_REPLY_TO);
    assert.equal(sent?.options.correlationId, 'id-1');
    assert.equal(sent?.options.expiration, '750');
    assert.equal(sent?.options.mandatory, true);
    assert.equal(sent?.options.headers?.['x-deadline'], request.deadline);
  });

  it('holds calls beyond maxInFlight until a slot is freed', async () => {
    const publisher = new Publisher('work', 1);
    publisher.attach(new FakeChannel().asChannel());
    assert.equal(publisher.takeSlotNow(), true);
    assert.equal(publisher.takeSlotNow(), false);
    let granted = false;
    const waiting = publisher.waitForSlot(attempt('id-2')).then(() => {
      granted = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(granted, false);
    publisher.releaseSlot();
    await waiting;
    assert.equal(granted, true);
  });

  it('waits for the drain after the socket buffer fills, then goes on', async () => {
    const publisher = new Publisher('work', 10);
    const channel = new FakeChannel();
    publisher.attach(channel.asChannel());
    channel.full = true;
    assert.equal(publisher.takeSlotNow(), true);
    publisher.publish(attempt('id-1'), 1000);
    assert.equal(publisher.takeSlotNow(), false, 'no fast path while the buffer is full');
    const next = publisher.waitForSlot(attempt('id-2'));
    channel.drain();
    assert.ok((await next) > 0);
  });

  it('a waiting call times out at its deadline, or stops at its abort, and gives its slot back', async () => {
    const publisher = new Publisher('work', 1);
    publisher.attach(new FakeChannel().asChannel());
    publisher.takeSlotNow();
    await assert.rejects(publisher.waitForSlot(attempt('id-2', 20)), TimeoutError);
    const abort = new AbortController();
    const aborted = publisher.waitForSlot(attempt('id-3', 5000, abort.signal));
    abort.abort();
    await assert.rejects(aborted, AbortedError);
    publisher.releaseSlot();
    assert.equal(publisher.takeSlotNow(), true, 'the slot is free again');
  });

  it('without a channel a call waits for the next one, and publishing fails at once', async () => {
    const publisher = new Publisher('work', 4);
    const first = new FakeChannel();
    publisher.attach(first.asChannel());
    publisher.detach(true);
    assert.throws(() => publisher.publish(attempt('id-1'), 100), ConnectionLostError);
    const waiting = publisher.waitForSlot(attempt('id-2'));
    const second = new FakeChannel();
    publisher.attach(second.asChannel());
    assert.ok((await waiting) > 0);
    assert.equal(publisher.detach(true, first.asChannel()), undefined, 'an old channel does not detach the new one');
    assert.equal(publisher.attached, true);
  });
});
