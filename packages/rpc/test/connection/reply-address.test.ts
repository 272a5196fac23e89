import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { replyIsMandatory, replyNeedsQuarantine, replyToProblem } from '../../src/connection/reply-address.ts';

// A direct reply-to address as RabbitMQ 3.10 hands it out: <base64 Erlang pid>.<base64 key>.
const REAL = 'amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAAecwAAAABrCDfL.bBNuz+YbqPHGjSImamSGkw==';
const [pid = '', key = ''] = REAL.slice('amq.rabbitmq.reply-to.'.length).split('.');
const pidBytes = Buffer.from(pid, 'base64');
const direct = (term: Buffer, suffix = key) => `amq.rabbitmq.reply-to.${term.toString('base64')}.${suffix}`;

describe('reply_to checks before a reply is published', () => {
  it('accepts a direct reply-to address the broker issued, and plain queue names', () => {
    assert.equal(replyToProblem(REAL), null);
    assert.equal(replyToProblem('my-reply-queue'), null);
    assert.equal(replyToProblem('amq.gen-JzTY20BRgKO-HjmUJj0wLg'), null);
    // The bare pseudo-queue name is routed (and returned) by the broker like any unknown queue.
    assert.equal(replyToProblem('amq.rabbitmq.reply-to'), null);
  });

  it('accepts pids in the other encodings of the external term format', () => {
    const node = Buffer.from('rabbit@host');
    const ids = Buffer.alloc(12, 1);
    const smallAtom = Buffer.concat([Buffer.from([131, 88, 119, node.length]), node, ids]);
    const oldPid = Buffer.concat([Buffer.from([131, 103, 100, 0, node.length]), node, Buffer.alloc(9, 1)]);
    assert.equal(replyToProblem(direct(smallAtom)), null);
    assert.equal(replyToProblem(direct(oldPid)), null);
  });

  it('refuses what would make the broker close the server connection (541) instead of dropping the reply', () => {
    const bad = [
      'amq.rabbitmq.reply-to.Zm9vYmFy.YmFy', // "foobar": not a term
      direct(Buffer.from([131, 100, 0, 3, 102, 111, 111])), // an atom, not a pid
      direct(pidBytes.subarray(0, pidBytes.length - 1)), // truncated
      direct(Buffer.concat([pidBytes, Buffer.from([0])])), // trailing byte
      `amq.rabbitmq.reply-to.${pid}!!.${key}`, // not base64
      `amq.rabbitmq.reply-to.${pid}`, // no key
      'amq.rabbitmq.reply-to.',
      'amq.rabbitmq.reply-to...',
    ];
    for (const replyTo of bad) assert.match(String(replyToProblem(replyTo)), /direct reply-to/, replyTo);
  });

  it('refuses a missing or oversized reply_to', () => {
    assert.match(String(replyToProblem(undefined)), /no reply_to/);
    assert.match(String(replyToProblem('')), /no reply_to/);
    assert.match(String(replyToProblem(42)), /no reply_to/);
    assert.match(String(replyToProblem('q'.repeat(256))), /255 bytes/);
  });
});

describe('how a reply is published', () => {
  it('asks for a return when reply_to is a queue name, never over direct reply-to (the broker returns those always)', () => {
    assert.equal(replyIsMandatory('my-reply-queue'), true);
    assert.equal(replyIsMandatory(REAL), false);
  });

  it('sends only replies to redelivered requests over direct reply-to through the quarantine', () => {
    assert.equal(replyNeedsQuarantine(REAL, true), true);
    assert.equal(replyNeedsQuarantine(REAL, false), false);
    assert.equal(replyNeedsQuarantine('my-reply-queue', true), false);
  });
});
