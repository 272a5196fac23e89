import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { BROKER_TLS_PORT, brokerListening, cannotControlBroker, rabbitmqctl } from '../support/broker-control.ts';
import { runClient, ServerProcess, stopAll } from '../support/processes.ts';
import { figure } from './support.ts';

const run = promisify(execFile);
const SCENARIO = 'TLS';
const TLS_PORT = BROKER_TLS_PORT;
/** Where scripts/ensure-broker.sh points the broker's TLS listener. */
const BROKER_TLS_DIR = process.env.FIB_RPC_BROKER_TLS_DIR ?? '/etc/rabbitmq/fib-rpc-tls';
const ENSURE_BROKER = fileURLToPath(new URL('../../scripts/ensure-broker.sh', import.meta.url));
const TLS_URL = `amqps://guest:guest@localhost:${TLS_PORT}`;

const skip = await cannotControlBroker();

const openssl = (...args: string[]) => run('openssl', args, { timeout: 30_000 });

/** A CA of our own, and certificates it signs: server (localhost) and client. */
async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30'],
    ...['-keyout', join(dir, `${name}-ca.key`), '-out', join(dir, `${name}-ca.pem`), '-subj', `/CN=fib-rpc ${name} CA`],
  );
}

async function sign(dir: string, ca: string, name: string, cn: string, extensions: string): Promise<void> {
  writeFileSync(join(dir, `${name}.ext`), extensions);
  await openssl(
    ...['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, `${name}.key`)],
    ...['-out', join(dir, `${name}.csr`), '-subj', `/CN=${cn}`],
  );
  await openssl(
    ...['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, `${ca}-ca.pem`)],
    ...['-CAkey', join(dir, `${ca}-ca.key`), '-CAcreateserial', '-days', '30'],
    ...['-out', join(dir, `${name}.pem`), '-extfile', join(dir, `${name}.ext`)],
  );
}

/** Puts our CA and server certificate where the broker's listener reads them, and reloads them. */
async function installOnBroker(dir: string): Promise<void> {
  for (const [from, to] of [
    ['test-ca.pem', 'ca.pem'],
    ['server.pem', 'server.pem'],
    ['server.key', 'server.key'],
  ] as const) {
    // Same owner and mode as ensure-broker.sh gave them; rename so the broker never reads half a file.
    await run('install', [
      '-o',
      'rabbitmq',
      '-m',
      to.endsWith('.key') ? '0600' : '0644',
      join(dir, from),
      join(BROKER_TLS_DIR, `${to}.new`),
    ]);
    await run('mv', ['-f', join(BROKER_TLS_DIR, `${to}.new`), join(BROKER_TLS_DIR, to)]);
  }
  await rabbitmqctl('eval', 'ssl:clear_pem_cache().');
}

let dir = '';
before(async () => {
  if (skip) return;
  // Idempotent: adds the TLS listener to the local broker the first time only.
  await run('bash', [ENSURE_BROKER], { timeout: 180_000 });
  dir = mkdtempSync(join(tmpdir(), 'fib-rpc-tls-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe(SCENARIO, { skip: skip ?? false }, () => {
  it('server and client talk to the broker over amqps:// with a CA, client certificate and key from files', {
    timeout: 120_000,
  }, async (t) => {
    await using admin = await BrokerAdmin.open();
    assert.ok(await brokerListening(TLS_PORT), `the broker has a TLS listener on ${TLS_PORT}`);
    await makeCa(dir, 'test');
    await makeCa(dir, 'other');
    await sign(
      dir,
      'test',
      'server',
      'localhost',
      'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
    );
    await sign(dir, 'test', 'client', 'fib-rpc-client', 'extendedKeyUsage=clientAuth\n');
    await sign(dir, 'other', 'stranger', 'fib-rpc-stranger', 'extendedKeyUsage=clientAuth\n');
    await installOnBroker(dir);

    const queue = admin.track(uniqueQueue('tls'));
    const tls = {
      AMQP_URL: TLS_URL,
      AMQP_TLS_CA_FILE: join(dir, 'test-ca.pem'),
      AMQP_TLS_CERT_FILE: join(dir, 'client.pem'),
      AMQP_TLS_KEY_FILE: join(dir, 'client.key'),
      RPC_QUEUE: queue,
    };
    await using server = await ServerProcess.start(tls);
    const one = await runClient(['--json', '30'], tls);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(JSON.parse(one.stdout).result, '832040');
    const load = await runClient(
      ['--load', '--count', '2000', '--concurrency', '16', '--spread', '--verify', '--json', '500'],
      tls,
    );
    assert.equal(load.code, 0, load.stderr);
    const summary = JSON.parse(load.stdout);
    assert.equal(summary.ok, 2000);
    assert.equal(summary.wrong, 0);

    // The broker saw TLS connections presenting our client certificate.
    const connections = await rabbitmqctl('list_connections', '--no-table-headers', 'ssl', 'peer_cert_subject');
    const tlsConnections = connections.split('\n').filter((l) => /^true\s.*CN=fib-rpc-client/.test(l)).length;
    assert.ok(tlsConnections >= 1, connections);

    // Refused: no client certificate; a certificate from another CA; a broker we do not trust.
    const noCert = await runClient(['30'], { ...tls, AMQP_TLS_CERT_FILE: undefined, AMQP_TLS_KEY_FILE: undefined });
    const stranger = await runClient(['30'], {
      ...tls,
      AMQP_TLS_CERT_FILE: join(dir, 'stranger.pem'),
      AMQP_TLS_KEY_FILE: join(dir, 'stranger.key'),
    });
    const untrusted = await runClient(['30'], { ...tls, AMQP_TLS_CA_FILE: join(dir, 'other-ca.pem') });
    for (const refused of [noCert, stranger, untrusted]) {
      assert.equal(refused.code, 6, refused.stderr);
      assert.match(refused.stderr, new RegExp(`cannot connect to the broker at amqps://localhost:${TLS_PORT}`));
      assert.doesNotMatch(refused.stderr, /guest:guest/);
    }
    assert.match(untrusted.stderr, /self-signed certificate|unable to verify/i);

    figure(t, SCENARIO, 'broker listener', `amqps 127.0.0.1:${TLS_PORT}, verify_peer, fail_if_no_peer_cert`);
    figure(t, SCENARIO, 'one call / load over TLS', `832040 / ${summary.ok} ok, ${summary.wrong} wrong`);
    figure(t, SCENARIO, 'TLS connections with our client certificate', tlsConnections);
    figure(
      t,
      SCENARIO,
      'refused: no client cert / other CA / untrusted broker',
      `exit ${noCert.code} / ${stranger.code} / ${untrusted.code}`,
    );
    assert.deepEqual(await stopAll([server]), [0]);
    assert.ok(readFileSync(join(BROKER_TLS_DIR, 'ca.pem'), 'utf8').includes('BEGIN CERTIFICATE'));
  });
});
