import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BROKER_HOST, BROKER_PORT, BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { freePort } from '../support/ports.ts';
import { CLIENT_BIN, ClientProcess, childEnv, runClient, ServerProcess } from '../support/processes.ts';
import { TcpProxy } from '../support/proxy.ts';
import { declareWorkQueue } from '../support/queues.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The built programs as a user runs them: separate processes, the real broker, exit
 * codes and what lands on stdout and stderr.
 */
let admin: BrokerAdmin;
let queue: string;
let server: ServerProcess;

before(async () => {
  admin = await BrokerAdmin.open();
  queue = admin.track(uniqueQueue('cli'));
  server = await ServerProcess.start({ RPC_QUEUE: queue });
});
after(async () => {
  await server?.stop();
  await admin.close();
});

/** A queue as the server declares it, with no consumer: calls to it wait until they time out. */
const idleQueue = (label: string) => declareWorkQueue(admin.channel, admin.track(uniqueQueue(label)));

/** Whether this machine lets us start a process as PID 1 of a new PID namespace (root, unshare). */
function canRunAsPid1(): boolean {
  return spawnSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' }).status === 0;
}

describe('fib-rpc-client, one call', () => {
  it('prints 832040 alone on stdout for 30 and exits 0', async () => {
    const run = await runClient(['30'], { RPC_QUEUE: queue });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '832040\n');
  });

  it('prints the exact 209-digit fib(1000)', async () => {
    const run = await runClient(['1000'], { RPC_QUEUE: queue });
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /^43466557686937456435688527675040625802564660517371780402481729089536555417949051890403879840079255169295922593080322634775209689623239873322471161642996440906533187938298969649928516003704476137795166849228875\n$/,
    );
  });

  it('--json prints one line with the result, n, latency and correlation id', async () => {
    const run = await runClient(['--json', '30'], { RPC_QUEUE: queue });
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const out = JSON.parse(lines[0] ?? '');
    assert.equal(out.result, '832040');
    assert.equal(out.n, 30);
    assert.equal(typeof out.latency_ms, 'number');
    assert.equal(typeof out.correlation_id, 'string');
    assert.ok(out.correlation_id.length > 0);
  });

  for (const bad of ['-1', 'abc', '1.5', '100001']) {
    it(`rejects ${bad} with a clear message and exit code 2, before any work`, async () => {
      const run = await runClient([bad], { RPC_QUEUE: queue });
      assert.equal(run.code, 2);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /invalid input: n must/);
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
    });
  }

  it('FIB_MAX_N applies on both sides: the server refuses what its limit excludes', async () => {
    const strict = admin.track(uniqueQueue('maxn'));
    await using _small = await ServerProcess.start({ RPC_QUEUE: strict, FIB_MAX_N: '50' });
    const run = await runClient(['60'], { RPC_QUEUE: strict });
    assert.equal(run.code, 5, run.stderr);
    assert.match(run.stderr, /server error INVALID_REQUEST: n must be at most 50/);
  });

  it('exits 3 at once with "no responder" when the queue does not exist', async () => {
    const started = Date.now();
    const run = await runClient(['30'], { RPC_QUEUE: uniqueQueue('nobody') });
    assert.equal(run.code, 3);
    assert.match(run.stderr, /NO_RESPONDER: no server is listening/);
    assert.ok(Date.now() - started < 5000);
  });

  it('exits 4 after --timeout when the queue exists but nobody consumes', async () => {
    const idle = await idleQueue('idle-cli');
    const run = await runClient(['--timeout', '500', '30'], { RPC_QUEUE: idle });
    assert.equal(run.code, 4);
    assert.match(run.stderr, /TIMEOUT: no reply within 500 ms/);
  });

  it('exits 9 with PROTOCOL_ERROR, not as a server error, when the reply is not one it can read', async () => {
    const foreign = await idleQueue('foreign-responder');
    // A responder that is no fib-rpc server: it answers every request in plain text.
    await using responder = await admin.openChannel();
    await responder.consume(foreign, (msg) => {
      if (msg === null) return;
      responder.sendToQueue(String(msg.properties.replyTo), Buffer.from('832040'), {
        correlationId: msg.properties.correlationId,
        contentType: 'text/plain',
      });
      responder.ack(msg);
    });
    const run = await runClient(['30'], { RPC_QUEUE: foreign });
    assert.equal(run.code, 9, run.stderr);
    assert.match(run.stderr, /PROTOCOL_ERROR: reply has content type "text\/plain", expected application\/json/);
    assert.doesNotMatch(run.stderr, /server error/);
    assert.equal(run.stdout, '');
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`on ${signal} abandons a call nobody answers and exits 8 at once`, async () => {
      const idle = await idleQueue('idle-signal');
      await using client = ClientProcess.start(['30'], { RPC_QUEUE: idle });
      await admin.waitForCount(idle, 1); // published: now it waits up to RPC_TIMEOUT_MS (30 s)
      const signalled = Date.now();
      client.child.kill(signal);
      const run = await client.result();
      assert.ok(Date.now() - signalled < 2000, `exited ${Date.now() - signalled} ms after ${signal}`);
      assert.equal(run.signal, null, 'it handled the signal');
      assert.equal(run.code, 8, run.stderr);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, new RegExp(`^fib-rpc-client: interrupted by ${signal}: the call was abandoned`));
    });
  }

  it('as PID 1 of its container, where SIGTERM has no default action, still exits 8 on it', {
    skip: !canRunAsPid1() && 'cannot create a PID namespace here (needs root and unshare)',
  }, async () => {
    const idle = await idleQueue('idle-pid1');
    const child = spawn('unshare', ['--pid', '--fork', process.execPath, CLIENT_BIN, '30'], {
      env: childEnv({ RPC_QUEUE: idle }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit');
    await admin.waitForCount(idle, 1);
    // unshare forks the client; the kubelet's SIGTERM comes from outside the namespace, like this one.
    const client = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim());
    const signalled = Date.now();
    process.kill(client, 'SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const [code] = await exited;
    clearTimeout(timer);
    assert.equal(code, 8, 'PID 1 ignored SIGTERM: killed after 10 s');
    assert.ok(Date.now() - signalled < 2000, `exited ${Date.now() - signalled} ms after SIGTERM`);
  });

  it('exits 6 at once naming the host, never the password, when the broker is unreachable', async () => {
    const started = Date.now();
    const run = await runClient(['30'], { AMQP_URL: 'amqp://app:s3cr3t-pw@127.0.0.1:1' });
    assert.ok(Date.now() - started < 5000, 'the client does not wait for a broker');
    assert.equal(run.code, 6);
    assert.match(run.stderr, /cannot connect to the broker at amqp:\/\/127\.0\.0\.1:1/);
    assert.match(run.stderr, /one attempt: set CLIENT_STARTUP_TIMEOUT_MS/);
    assert.doesNotMatch(run.stderr, /s3cr3t-pw/);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  });

  it('with CLIENT_STARTUP_TIMEOUT_MS, waits for a broker that is not reachable yet, then answers', async () => {
    const port = await freePort();
    await using client = ClientProcess.start(['30'], {
      RPC_QUEUE: queue,
      AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}`,
      CLIENT_STARTUP_TIMEOUT_MS: '30000',
    });
    await client.waitForLog((l) => l.msg === 'cannot reach the broker yet, retrying');
    // Refused attempts for a while: the client keeps its process (in a pod: its IP) and waits.
    await sleep(1500);
    assert.ok(client.running, client.stderr);
    await using _broker = await TcpProxy.start(BROKER_PORT, BROKER_HOST, port);
    const run = await client.result();
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, '832040\n');
  });

  it('with CLIENT_STARTUP_TIMEOUT_MS, exits 6 once it has passed, naming the broker and the limit', async () => {
    const port = await freePort();
    const started = Date.now();
    const run = await runClient(['30'], {
      AMQP_URL: `amqp://app:s3cr3t-pw@127.0.0.1:${port}`,
      CLIENT_STARTUP_TIMEOUT_MS: '1500',
    });
    const took = Date.now() - started;
    assert.equal(run.code, 6, run.stderr);
    assert.ok(took >= 1500 && took < 10_000, `exited after ${took} ms`);
    assert.match(run.stderr, /gave up on the broker after \d+ attempts/);
    assert.match(run.stderr, /CLIENT_STARTUP_TIMEOUT_MS \(client\.startupTimeoutMs\) = 1500 ms/);
    assert.match(run.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.doesNotMatch(run.stderr, /s3cr3t-pw/);
  });

  it('exits 2 naming the env var when the configuration is invalid', async () => {
    const run = await runClient(['30'], { RPC_TIMEOUT_MS: '10abc' });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /RPC_TIMEOUT_MS/);
  });

  it('--expect fails with exit 7 on a wrong answer', async () => {
    const run = await runClient(['--expect', '1', '30'], { RPC_QUEUE: queue });
    assert.equal(run.code, 7);
    assert.match(run.stderr, /expected 1, got 832040/);
  });
});

describe('fib-rpc-server', () => {
  it('stops at start-up with a message naming the key when the configuration is invalid', async () => {
    await assert.rejects(
      ServerProcess.start({ PREFETCH: 'lots' }, 5000),
      /PREFETCH \(server.prefetch\): must be an integer/,
    );
  });

  it('serves /healthz, /readyz and Prometheus /metrics', async () => {
    const base = `http://127.0.0.1:${server.httpPort}`;
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    await runClient(['12'], { RPC_QUEUE: queue });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /rpc_server_requests_total\{method="fib",outcome="ok"\} \d+/);
    assert.match(metrics, /rpc_server_handler_duration_seconds_bucket/);
    assert.match(metrics, /rpc_server_in_flight 0/);
    assert.match(metrics, /rpc_server_broker_connected 1/);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  });

  it('two servers share the load', async () => {
    const shared = admin.track(uniqueQueue('shared'));
    await using a = await ServerProcess.start({ RPC_QUEUE: shared, PREFETCH: '4' });
    await using b = await ServerProcess.start({ RPC_QUEUE: shared, PREFETCH: '4' });
    const run = await runClient(['--load', '--count', '600', '--concurrency', '16', '--json', '25'], {
      RPC_QUEUE: shared,
    });
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout);
    assert.equal(summary.ok, 600);
    const servedA = await a.metric('rpc_server_requests_total', 'outcome="ok"');
    const servedB = await b.metric('rpc_server_requests_total', 'outcome="ok"');
    assert.equal(servedA + servedB, 600);
    assert.ok(servedA >= 60 && servedB >= 60, `a served ${servedA}, b served ${servedB}`);
  });

  it('on SIGTERM drains: in-flight requests are answered, nothing is lost, and it exits 0', async () => {
    const drainQueue = admin.track(uniqueQueue('sigterm'));
    await using leaving = await ServerProcess.start({ RPC_QUEUE: drainQueue, PREFETCH: '16' });
    await using _staying = await ServerProcess.start({ RPC_QUEUE: drainQueue, PREFETCH: '16' });
    // fib(50000) keeps each server busy enough to hold work in flight at the signal.
    const load = runClient(['--load', '--duration', '3s', '--concurrency', '32', '--json', '--verify', '50000'], {
      RPC_QUEUE: drainQueue,
    });
    await sleep(1200);
    const [code, signal] = await leaving.stop('SIGTERM');
    assert.equal(signal, null);
    assert.equal(code, 0, leaving.stderr);
    assert.ok(leaving.logs.some((l) => l.msg === 'drained: every in-flight request was answered'));
    const run = await load;
    const summary = JSON.parse(run.stdout);
    assert.deepEqual(summary.errors, {});
    assert.equal(summary.wrong, 0);
    assert.equal(summary.ok, summary.calls);
    assert.ok(summary.calls > 10);
    assert.equal(await admin.messageCount(drainQueue), 0);
  });
});

describe('fib-rpc-client --load', () => {
  it('prints a JSON summary with the documented keys', async () => {
    const run = await runClient(
      ['--load', '--duration', '1s', '--concurrency', '8', '--json', '--spread', '--verify', '90'],
      { RPC_QUEUE: queue },
    );
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout);
    for (const key of ['calls', 'ok', 'errors', 'calls_per_s', 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms', 'wrong']) {
      assert.ok(key in summary, key);
    }
    assert.ok(summary.calls > 0);
    assert.equal(summary.ok, summary.calls);
    assert.equal(summary.wrong, 0);
    assert.ok(summary.p50_ms <= summary.p90_ms && summary.p90_ms <= summary.p99_ms && summary.p99_ms <= summary.max_ms);
  });

  it('shows a live progress line on stderr when it is a terminal', async () => {
    // script(1) gives the client a pseudo-terminal, as an interactive shell would.
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLIENT_BIN)} --load --duration 3s --concurrency 4 20`;
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      env: childEnv({ RPC_QUEUE: queue }),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let screen = '';
    child.stdout.on('data', (d: Buffer) => {
      screen += d;
    });
    const [code] = await once(child, 'close');
    assert.equal(code, 0, screen);
    // Each update rewrites the line: carriage return, then ESC [K (erase to end of line).
    const updates = screen
      .split('\r')
      .filter(
        (part) =>
          /^.\[K[\d.]+s {2}calls \d+ {2}ok \d+ {2}errors 0 {2}\d+\/s {2}p50 [\d.]+ ms/.test(part) &&
          part.charCodeAt(0) === 27,
      );
    assert.ok(updates.length >= 2, `progress updates in: ${JSON.stringify(screen.slice(0, 300))}`);
    assert.match(screen, /calls \d+ {2}ok \d+ {2}wrong 0 {2}errors none/);
  });

  it('on SIGTERM stops, prints the summary of the calls so far and exits 8 at once', async () => {
    const served = await server.metric('rpc_server_requests_total');
    await using client = ClientProcess.start(['--load', '--duration', '60s', '--concurrency', '8', '--json', '25'], {
      RPC_QUEUE: queue,
    });
    // A closed loop of 8 sends request k only once call k - 8 has its answer, so a server that
    // has answered 108 means 100 answers reached the client (100 alone left replies in flight).
    await waitFor(
      async () => (await server.metric('rpc_server_requests_total')) >= served + 100 + 8,
      15_000,
      'the load to start',
    );
    const signalled = Date.now();
    client.child.kill('SIGTERM');
    const run = await client.result();
    assert.ok(Date.now() - signalled < 2000, `exited ${Date.now() - signalled} ms after SIGTERM`);
    assert.equal(run.signal, null, 'it handled the signal');
    assert.equal(run.code, 8, run.stderr);
    const summary = JSON.parse(run.stdout);
    assert.equal(summary.interrupted, true);
    assert.ok(summary.calls >= 100, `${summary.calls} calls`);
    assert.equal(summary.ok, summary.calls);
    assert.deepEqual(summary.errors, {});
    assert.ok(summary.abandoned_calls <= 8);
    assert.ok(summary.duration_s < 30);
  });

  it('prints a readable summary without --json', async () => {
    const run = await runClient(['--load', '--count', '50', '--concurrency', '4'], { RPC_QUEUE: queue });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /calls 50 {2}ok 50 {2}wrong 0 {2}errors none/);
    assert.match(run.stdout, /calls\/s over/);
    assert.match(run.stdout, /latency ms: p50 [\d.]+ {2}p90 [\d.]+ {2}p99 [\d.]+ {2}max [\d.]+/);
  });
});
