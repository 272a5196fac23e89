import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BROKER_HOST, BROKER_PORT, BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { freePort } from '../support/ports.ts';
import { runClient, ServerProcess } from '../support/processes.ts';
import { TcpProxy } from '../support/proxy.ts';
import { declaredWith, declareWorkQueue, OLD_DLQ_ARGUMENTS } from '../support/queues.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The built server before it serves: a broker that is not there yet, one that never comes,
 * a work queue that exists with other arguments (it exits 2) and a dead-letter queue that
 * does (it is used as it is).
 */
let admin: BrokerAdmin;
before(async () => {
  admin = await BrokerAdmin.open();
});
after(async () => {
  await admin.close();
});

async function status(server: ServerProcess, path: string): Promise<number> {
  return (await fetch(`http://127.0.0.1:${server.httpPort}${path}`)).status;
}

/** The one error line a server that cannot start logs, and its exit code. */
async function failure(server: ServerProcess): Promise<{ code: number | null; message: string }> {
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 20_000);
  const [code, signal] = await server.exited;
  clearTimeout(timer);
  assert.equal(signal, null, `the server did not stop by itself:\n${server.stderr}`);
  const line = server.logs.find((l) => l.level === 'error');
  assert.ok(line, `no error line in:\n${server.stderr}`);
  assert.doesNotMatch(server.stderr, /\n\s+at /, 'no stack trace');
  return { code, message: String(line.msg) };
}

describe('fib-rpc-server started before its broker', () => {
  it('stays alive and unready while connections are refused, then serves as soon as the broker appears', async () => {
    const queue = admin.track(uniqueQueue('late-broker'));
    const port = await freePort();
    await using server = ServerProcess.spawn({
      RPC_QUEUE: queue,
      AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}`,
      LOG_LEVEL: 'debug',
    });
    await server.waitForLog((l) => l.msg === 'cannot reach the broker yet, retrying');
    // A few seconds of refused attempts: the process waits instead of exiting into a crash loop.
    await sleep(3000);
    assert.equal(server.child.exitCode, null, server.stderr);
    assert.equal(await status(server, '/healthz'), 200);
    assert.equal(await status(server, '/readyz'), 503);
    const attempts = server.logs.filter((l) => l.msg === 'cannot reach the broker yet, retrying');
    assert.ok(attempts.length >= 3, `${attempts.length} attempts in 3 s`);
    assert.equal(attempts.filter((l) => l.level === 'warn').length, 1, 'one warning, the rest at debug');

    await using _broker = await TcpProxy.start(BROKER_PORT, BROKER_HOST, port);
    await waitFor(async () => (await status(server, '/readyz')) === 200, 10_000, 'the server to be ready');
    const run = await runClient(['30'], { RPC_QUEUE: queue });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '832040\n');
  });

  it('exits 0 at once on SIGTERM while it waits', async () => {
    const port = await freePort();
    await using server = ServerProcess.spawn({
      RPC_QUEUE: uniqueQueue('never'),
      AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}`,
    });
    await server.waitForLog((l) => l.msg === 'cannot reach the broker yet, retrying');
    const signalled = Date.now();
    const [code] = await server.stop('SIGTERM');
    assert.equal(code, 0, server.stderr);
    assert.ok(Date.now() - signalled < 3000, `took ${Date.now() - signalled} ms`);
  });

  it('with AMQP_STARTUP_TIMEOUT_MS=0, exits 0 promptly on a SIGTERM that comes at its very first log line', async () => {
    const port = await freePort();
    await using server = ServerProcess.spawn({
      RPC_QUEUE: uniqueQueue('never'),
      AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}`,
      AMQP_STARTUP_TIMEOUT_MS: '0',
      LOG_LEVEL: 'debug',
    });
    // Logged once the process handlers are in place, before the HTTP server and the broker
    // connection are even begun.
    await server.waitForLog((l) => l.msg === 'configuration');
    const signalled = Date.now();
    const [code, signal] = await server.stop('SIGTERM');
    assert.deepEqual([code, signal], [0, null], server.stderr);
    assert.ok(Date.now() - signalled < 3000, `took ${Date.now() - signalled} ms`);
    assert.ok(
      server.logs.some((l) => l.msg === 'shutting down' && l.reason === 'SIGTERM'),
      server.stderr,
    );
  });

  it('exits 6 after AMQP_STARTUP_TIMEOUT_MS, naming the broker and the setting, never the password', async () => {
    const port = await freePort();
    const started = Date.now();
    const server = ServerProcess.spawn({
      RPC_QUEUE: uniqueQueue('never'),
      AMQP_URL: `amqp://app:s3cr3t-pw@127.0.0.1:${port}`,
      AMQP_STARTUP_TIMEOUT_MS: '1500',
    });
    const { code, message } = await failure(server);
    const took = Date.now() - started;
    assert.equal(code, 6);
    assert.ok(took >= 1500 && took < 10_000, `exited after ${took} ms`);
    assert.match(message, new RegExp(`amqp://127\\.0\\.0\\.1:${port}`));
    assert.match(message, /ECONNREFUSED/);
    assert.match(message, /AMQP_STARTUP_TIMEOUT_MS \(amqp\.startupTimeoutMs\) = 1500 ms/);
    assert.doesNotMatch(server.stderr, /s3cr3t-pw/);
  });
});

describe('fib-rpc-server and a queue that exists with other arguments', () => {
  it("exits 2 saying what to do when the work queue is the classic tutorial's non-durable one", async () => {
    const queue = admin.track(uniqueQueue('tutorial'));
    await admin.channel.assertQueue(queue, { durable: false });
    const { code, message } = await failure(ServerProcess.spawn({ RPC_QUEUE: queue }));
    assert.equal(code, 2);
    assert.ok(
      message.startsWith(
        `queue "${queue}" already exists with other arguments: durable is "false" on the broker, "true" here.`,
      ),
      message,
    );
    assert.match(message, /set RPC_QUEUE to another name/);
    assert.match(message, new RegExp(`delete the queue "${queue}".*rabbitmqctl delete_queue ${queue}`));
    assert.doesNotMatch(message, /RPC_QUEUE_TYPE/, 'no setting declares a non-durable queue');
  });

  it('names RPC_QUEUE_TYPE when only the type differs, and starts with it set', async () => {
    const queue = await declareWorkQueue(admin.channel, admin.track(uniqueQueue('classic-made')));
    const { code, message } = await failure(ServerProcess.spawn({ RPC_QUEUE: queue, RPC_QUEUE_TYPE: 'quorum' }));
    assert.equal(code, 2);
    assert.match(
      message,
      /x-queue-type is "classic" on the broker, "quorum" here\. To use it as it is, set RPC_QUEUE_TYPE=classic/,
    );
    const server = await ServerProcess.start({ RPC_QUEUE: queue, RPC_QUEUE_TYPE: 'classic' });
    await server.stop();
  });

  it('starts with a dead-letter queue made by the old version, keeping it as it is and saying how to bound it', async () => {
    const queue = admin.track(uniqueQueue('old-dlq'));
    const dlq = `${queue}.dlq`;
    // What earlier versions declared: the type and nothing else; and a dead letter in it.
    await declareWorkQueue(admin.channel, queue, { deadLetterQueue: true });
    admin.channel.sendToQueue(dlq, Buffer.from('an old dead letter'));
    await admin.waitForCount(dlq, 1);
    await using server = await ServerProcess.start({
      RPC_QUEUE: queue,
      RPC_QUEUE_TYPE: 'classic',
      RPC_DLQ_MAX_LENGTH: '5000',
      RPC_DLQ_TTL_MS: '3600000',
    });
    const run = await runClient(['30'], { RPC_QUEUE: queue });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '832040\n');

    const warnings = server.logs.filter((l) => l.level === 'warn');
    assert.equal(warnings.length, 1, `one warning:\n${server.stderr}`);
    const warning = String(warnings[0]?.msg);
    assert.equal(warnings[0]?.queue, dlq);
    assert.match(
      warning,
      new RegExp(`queue "${queue}\\.dlq" already exists with other arguments: x-(max-length|message-ttl) is not set`),
    );
    assert.match(warning, /RPC_DLQ_MAX_LENGTH \(5000\) and RPC_DLQ_TTL_MS \(3600000\) are not applied/);
    const pattern = `^${queue.replaceAll('.', '\\.')}\\.dlq$`;
    assert.ok(
      warning.includes(
        `rabbitmqctl set_policy --apply-to queues ${dlq}-bounds '${pattern}' '{"max-length":5000,"message-ttl":3600000}'`,
      ),
      warning,
    );
    assert.ok(warning.includes(`rabbitmqctl delete_queue ${dlq}`), warning);
    assert.match(warning, /its messages are lost/);
    // The throwaway channels the broker closed did not cost the server its connection.
    assert.equal(server.logs.filter((l) => l.msg === 'awaiting RPC requests').length, 1, server.stderr);
    assert.ok(!server.logs.some((l) => l.msg === 'lost the broker connection, reconnecting'), server.stderr);
    const [code] = await server.stop();
    assert.equal(code, 0, server.stderr);
    // The dead-letter queue is the old one: same arguments, same message.
    assert.equal(await admin.messageCount(dlq), 1);
    assert.ok(await declaredWith(admin, dlq, OLD_DLQ_ARGUMENTS));
  });
});
