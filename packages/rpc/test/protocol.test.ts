import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message, MessageProperties } from 'amqplib';
import { InvalidRequestError, ProtocolError, RemoteError, UnsupportedVersionError } from '../src/errors.ts';
import {
  DIRECT_REPLY_TO,
  decodeReply,
  decodeRequest,
  encodeError,
  encodeResult,
  HEADER_DEADLINE,
  HEADER_VERSION,
  PROTOCOL_VERSION,
  readDeadline,
  requestOptions,
  requestVersion,
  toEnvelope,
} from '../src/protocol.ts';

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

  const malformed: Array<[string, Message, RegExp]> = [
    ['a body that is not JSON', message('garbage'), /not valid JSON/],
    ['neither result nor error', message('{"x":1}'), /neither "result" nor "error"/],
    ['another content type', message('{"result":"1"}', { contentType: 'text/plain' }), /content type "text\/plain"/],
    ['an error without code and message', message('{"error":{"retryable":true,"type":"E"}}'), /lacks code, message$/],
    ['an error that is no object', message('{"error":"boom"}'), /lacks code, message, retryable, type/],
  ];
  for (const [what, msg, pattern] of malformed) {
    it(`reports a reply with ${what} as a local ProtocolError, not a server's error`, () => {
      assert.throws(
        () => decodeReply(msg),
        (err: unknown) =>
          err instanceof ProtocolError &&
          !(err instanceof RemoteError) &&
          err.code === 'PROTOCOL_ERROR' &&
          err.retryable === false &&
          pattern.test(err.message),
      );
    });
  }

  it('reads a JSON reply whose content type is application/json or not set', () => {
    assert.equal(decodeReply(message('{"result":"5"}', { contentType: 'application/json' })), '5');
    assert.equal(decodeReply(message('{"result":"5"}')), '5');
  });
});

describe('request properties', () => {
  it('carry the correlation id, reply address, method, expiry, deadline and version', () => {
    const options = requestOptions(
      { id: 'abc', method: 'fib', deadline: 1_700_000_000_000, traceContext: undefined },
      750,
    );
    assert.deepEqual(options, {
      correlationId: 'abc',
      replyTo: DIRECT_REPLY_TO,
      messageId: 'abc',
      type: 'fib',
      contentType: 'application/json',
      expiration: '750',
      mandatory: true,
      headers: { [HEADER_VERSION]: PROTOCOL_VERSION, [HEADER_DEADLINE]: 1_700_000_000_000 },
    });
  });
});

describe('version header', () => {
  const versioned = (version: unknown) => message('{"n":1}', { headers: { [HEADER_VERSION]: version } });

  it('reads numbers and version strings by their major; no header is the current version', () => {
    assert.equal(requestVersion(versioned(1)), 1);
    assert.equal(requestVersion(versioned('1')), 1);
    assert.equal(requestVersion(versioned('2.3')), 2);
    assert.equal(requestVersion(message('{"n":1}', { headers: {} })), PROTOCOL_VERSION);
    assert.equal(requestVersion(message('{"n":1}', { headers: undefined })), PROTOCOL_VERSION);
  });

  it('refuses a request of a newer major version, naming both versions', () => {
    assert.throws(
      () => decodeRequest(versioned(PROTOCOL_VERSION + 1), 'fib', 1000),
      (err: unknown) =>
        err instanceof UnsupportedVersionError &&
        err.code === 'UNSUPPORTED_VERSION' &&
        err.retryable === false &&
        err.message.includes(`version ${PROTOCOL_VERSION + 1}`) &&
        err.message.includes(`version ${PROTOCOL_VERSION}`),
    );
  });

  it('serves the current version and refuses a header that is no version', () => {
    assert.deepEqual(decodeRequest(versioned(PROTOCOL_VERSION), 'fib', 1000).params, { n: 1 });
    for (const bad of ['soon', { nested: [1, 2] }, -1, 1.5e300, '']) {
      assert.throws(
        () => decodeRequest(versioned(bad), 'fib', 1000),
        (err: unknown) => err instanceof InvalidRequestError && /x-rpc-version/.test(err.message),
        `header ${JSON.stringify(bad)}`,
      );
    }
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
