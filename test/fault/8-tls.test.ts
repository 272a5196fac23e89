import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { brokerListening } from '../support/broker-control.ts';
import { runClient, ServerProcess, stopAll } from '../support/processes.ts';
import { cannotRunTestBroker, TestBroker } from '../support/test-broker.ts';
import { figure } from './support.ts';

const run = promisify(execFile);
const SCENARIO = 'TLS';

/**
 * The TLS listener is on the suite's own broker node (scripts/test-broker.sh, or the RabbitMQ 4
 * node with BROKER=rabbitmq4), never on the machine's broker: a listener, certificates and a
 * restart are not the suite's to add there.
 */
const skip = cannotRunTestBroker();

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

/** Puts our CA and server certificate where the node's listener reads them, and reloads them. */
async function installOnBroker(node: TestBroker, dir: string): Promise<void> {
  for (const [from, to] of [
    ['test-ca.pem', 'ca.pem'],
    ['server.pem', 'server.pem'],
    ['server.key', 'server.key'],
  ] as const) {
    // The node runs as this user (root for RabbitMQ 4's): the mode is what matters. Rename so
    // the node never reads half a file.
    await run('install', [
      '-m',
      to.endsWith('.key') ? '0600' : '0644',
      join(dir, from),
      join(node.tlsDir, `${to}.new`),
    ]);
    await run('mv', ['-f', join(node.tlsDir, `${to}.new`), join(node.tlsDir, to)]);
  }
  await node.ctl('eval', 'ssl:clear_pem_cache().');
}

let dir = '';
let node: TestBroker | undefined;
before(async () => {
  if (skip) return;
  node = await TestBroker.up();
  dir = mkdtempSync(join(tmpdir(), 'fib-rpc-tls-'));
});
after(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  await node?.stop();
});

describe(SCENARIO, { skip: skip ?? false }, () => {
  it('server and client talk to the broker over amqps:// with a CA, client certificate and key from files', {
    timeout: 120_000,
  }, async (t) => {
    assert.ok(node);
    const tlsPort = node.tlsPort;
    const tlsUrl = `amqps://guest:guest@localhost:${tlsPort}`;
    await using admin = await BrokerAdmin.open(node.url);
    assert.ok(await brokerListening(tlsPort, '127.0.0.1'), `the node has a TLS listener on ${tlsPort}`);
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
    await installOnBroker(node, dir);

    const queue = admin.track(uniqueQueue('tls'));
    const tls = {
      AMQP_URL: tlsUrl,
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

    // The node saw TLS connections presenting our client certificate.
    const connections = await node.ctl('list_connections', '--no-table-headers', 'ssl', 'peer_cert_subject');
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
      assert.match(refused.stderr, new RegExp(`cannot connect to the broker at amqps://localhost:${tlsPort}`));
      assert.doesNotMatch(refused.stderr, /guest:guest/);
    }
    assert.match(untrusted.stderr, /self-signed certificate|unable to verify/i);

    figure(t, SCENARIO, 'broker listener', `amqps 127.0.0.1:${tlsPort}, verify_peer, fail_if_no_peer_cert`);
    figure(t, SCENARIO, 'one call / load over TLS', `832040 / ${summary.ok} ok, ${summary.wrong} wrong`);
    figure(t, SCENARIO, 'TLS connections with our client certificate', tlsConnections);
    figure(
      t,
      SCENARIO,
      'refused: no client cert / other CA / untrusted broker',
      `exit ${noCert.code} / ${stranger.code} / ${untrusted.code}`,
    );
    assert.deepEqual(await stopAll([server]), [0]);
    assert.ok(readFileSync(join(node.tlsDir, 'ca.pem'), 'utf8').includes('BEGIN CERTIFICATE'));
  });
});
