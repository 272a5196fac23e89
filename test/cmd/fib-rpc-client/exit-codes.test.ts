import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BrokerBlockedError, ProtocolError, RemoteError, UnsupportedVersionError } from '@fib-rpc/rpc';
import { EXIT, exitCodeFor } from '../../../src/cmd/fib-rpc-client/exit-codes.ts';

describe('client exit codes', () => {
  it('an unreadable reply exits 9, apart from the errors a server sends (5)', () => {
    assert.equal(exitCodeFor(new ProtocolError('reply body is not valid JSON')), EXIT.protocolError);
    assert.equal(EXIT.protocolError, 9);
    assert.equal(exitCodeFor(new RemoteError('PROTOCOL_ERROR', 'sent by a server', false, 'X')), EXIT.remoteError);
  });

  it('a call the blocked broker was never sent exits 10', () => {
    assert.equal(exitCodeFor(new BrokerBlockedError('low on memory')), EXIT.brokerBlocked);
    assert.equal(EXIT.brokerBlocked, 10);
  });

  it("a server's refusal of the request's version is a remote error", () => {
    const refusal = new UnsupportedVersionError(2, 1);
    assert.equal(exitCodeFor(new RemoteError(refusal.code, refusal.message, refusal.retryable, refusal.name)), 5);
  });
});
