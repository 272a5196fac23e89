import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createServer, type Server } from 'node:tls';
import { untrustedCertificateHint } from '../../../src/cmd/common/tls-hint.ts';
import { runClient } from '../../support/processes.ts';

/**
 * A broker whose certificate the client cannot verify: a TLS listener on loopback with a
 * self-signed certificate made here (it never gets as far as AMQP).
 */
let dir = '';
let server: Server;
let port = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fib-rpc-tls-hint-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (s) =>
    s.end(),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a broker certificate the client cannot verify', () => {
  it('makes the client exit 6 with a message that names AMQP_TLS_CA_FILE', async () => {
    const result = await runClient(['5'], {
      AMQP_URL: `amqps://u:p@localhost:${port}/`,
      AMQP_TLS_CA_FILE: undefined,
      AMQP_CONNECT_TIMEOUT_MS: '5000',
    });
    assert.equal(result.code, 6, result.stderr);
    assert.match(result.stderr, /self-signed certificate/);
    assert.match(result.stderr, /set AMQP_TLS_CA_FILE \(amqp\.tls\.caFile\) to the CA that signed it/);
    assert.doesNotMatch(result.stderr, /u:p@/, 'no credentials in the message');
  });

  it('is trusted once AMQP_TLS_CA_FILE names its CA: the failure is then another, with no such hint', async () => {
    const result = await runClient(['5'], {
      AMQP_URL: `amqps://u:p@localhost:${port}/`,
      AMQP_TLS_CA_FILE: join(dir, 'cert.pem'),
      AMQP_CONNECT_TIMEOUT_MS: '5000',
    });
    assert.equal(result.code, 6, result.stderr);
    assert.doesNotMatch(result.stderr, /AMQP_TLS_CA_FILE/);
  });

  it('gives no hint for other failures', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    assert.equal(untrustedCertificateHint(new Error('cannot connect', { cause: refused })), '');
  });
});
