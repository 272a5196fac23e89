import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message, MessageProperties } from 'amqplib';
import { InvalidRequestError, RemoteError } from '../../src/rpc/errors.ts';
import {
  decodeReply,
  decodeRequest,
  encodeError,
  encodeResult,
  HEADER_DEADLINE,
  readDeadline,
  toEnvelope,
} from '../../src/rpc/protocol.ts';

function message(body: string | Buffer, properties: Partial<MessageProperties> = {}): Message {
  return {
    content: Buffer.isBuffer(body) ? body : Buffer.from(body),
    fields: {} as Message['fields'],
    properties: { headers: {}, ...properties } as MessageProperties,
  };
}

describe('request decoding', () => {
  it('reads JSON params and the method from the type property', () => {
    const req = decodeRequest(message('{"n":30}', { contentType: 'application/json', type: 'fib' }), 'x', 1000);
    assert.deepEqual(req, { method: 'fib', params: { n: 30 }, plainText: false });
  });

  it('accepts the tutorial client: a plain-text bare integer, no method', () => {
    const req = decodeRequest(message('30', { contentType: 'text/plain' }), 'fib', 1000);
    assert.deepEqual(req, { method: 'fib', params: 30, plainText: true });
    assert.equal(decodeRequest(message('30'), 'fib', 1000).plainText, true);
  });

  const bad: Array<[string, Message, RegExp]> = [
    ['too large', message('1'.repeat(101)), /101 bytes, the limit is 100/],
    ['not JSON', message('{nope', { contentType: 'application/json' }), /not valid JSON/],
    ['invalid UTF-8', message(Buffer.from([0x33, 0xff, 0xfe])), /not valid UTF-8/],
    ['wrong content type', message('30', { contentType: 'application/xml' }), /unsupported content type/],
  ];
  for (const [what, msg, pattern] of bad) {
    it(`refuses a request that is ${what}`, () => {
      assert.throws(
        () => decodeRequest(msg, 'fib', 100),
        (err: unknown) => err instanceof InvalidRequestError && pattern.test(err.message),
      );
    });
  }
});

describe('replies', () => {
  it('round-trips a result', () => {
    assert.equal(decodeReply(message(encodeResult('832040', false))), '832040');
  });

  it('answers plain-text callers in plain text', () => {
    assert.equal(encodeResult('832040', true).toString(), '832040');
    const err = new InvalidRequestError('n must not be negative, got -1');
    assert.equal(
      encodeError(toEnvelope(err), true).toString(),
      'error: INVALID_REQUEST: n must not be negative, got -1',
    );
  });

  it('turns an error envelope into a RemoteError with the server code, message and retryability', () => {
    const body = encodeError({ code: 'HANDLER_ERROR', message: 'boom', retryable: true, type: 'Error' }, false);
    assert.throws(
      () => decodeReply(message(body)),
      (err: unknown) => {
        assert.ok(err instanceof RemoteError);
        assert.equal(err.code, 'HANDLER_ERROR');
        assert.equal(err.message, 'boom');
        assert.equal(err.retryable, true);
        assert.equal(err.remoteType, 'Error');
        return true;
      },
    );
  });

  it('reports a malformed reply as BAD_REPLY rather than crashing', () => {
    assert.throws(
      () => decodeReply(message('garbage')),
      (err: unknown) => err instanceof RemoteError && err.code === 'BAD_REPLY',
    );
    assert.throws(
      () => decodeReply(message('{"x":1}')),
      (err: unknown) => err instanceof RemoteError && err.code === 'BAD_REPLY',
    );
  });
});

describe('deadline header', () => {
  it('reads numbers and numeric strings, ignores anything else', () => {
    assert.equal(readDeadline(message('', { headers: { [HEADER_DEADLINE]: 1700000000000 } })), 1700000000000);
    assert.equal(readDeadline(message('', { headers: { [HEADER_DEADLINE]: '1700000000000' } })), 1700000000000);
    assert.equal(readDeadline(message('', { headers: { [HEADER_DEADLINE]: 'soon' } })), undefined);
    assert.equal(readDeadline(message('', { headers: {} })), undefined);
  });
});
