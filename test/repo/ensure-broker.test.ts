/**
 * scripts/ensure-broker.sh (`make broker`, a prerequisite of `make demo` and `make test`) on a
 * machine whose broker already runs: it must leave that broker exactly as its owner set it up.
 * The script runs for real against the broker on 127.0.0.1:5672, with every program that could
 * change a broker (rabbitmqctl, rabbitmq-plugins, rabbitmq-server, apt-get, sudo, systemctl,
 * service) replaced by one that records its call and fails. Afterwards: no such call, every
 * file under the broker's config folder byte-for-byte as before, and a connection opened
 * before the run still open (a restart of the broker or its application would have closed it).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { brokerListening } from '../support/broker-control.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const MACHINE_BROKER = 'amqp://guest:guest@127.0.0.1:5672';
/** Where a Debian/Ubuntu rabbitmq-server keeps rabbitmq.conf, enabled_plugins and the rest. */
const CONFIG_DIR = '/etc/rabbitmq';
const CHANGERS = ['rabbitmqctl', 'rabbitmq-plugins', 'rabbitmq-server', 'apt-get', 'sudo', 'systemctl', 'service'];

/** Path → sha256 of every file below dir (nothing when it does not exist). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, name);
    if (statSync(path).isFile()) out[path] = createHash('sha256').update(readFileSync(path)).digest('hex');
  }
  return out;
}

const running = await brokerListening(5672, '127.0.0.1');
const work = mkdtempSync(join(tmpdir(), 'fib-ensure-broker-'));
after(() => rmSync(work, { recursive: true, force: true }));

describe('scripts/ensure-broker.sh with a broker already running on 127.0.0.1:5672', {
  skip: !running && 'no broker answers on 127.0.0.1:5672 (the case this covers is one that does)',
}, () => {
  it('only checks that it answers: no config, plugin, restart or install', async () => {
    const bin = join(work, 'bin');
    const calls = join(work, 'calls');
    mkdirSync(bin);
    for (const name of CHANGERS) {
      writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >>'${calls}'\nexit 1\n`);
      chmodSync(join(bin, name), 0o755);
    }
    const before = snapshot(CONFIG_DIR);
    const connection = await amqp.connect(MACHINE_BROKER);
    let closed = false;
    connection.on('close', () => {
      closed = true;
    });
    connection.on('error', () => {});
    try {
      const env = { PATH: `${bin}:${process.env.PATH ?? ''}`, HOME: process.env.HOME };
      const run = spawnSync('bash', [join(root, 'scripts/ensure-broker.sh')], {
        env,
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
      assert.match(run.stdout, /broker: reachable on 127\.0\.0\.1:5672/);
      assert.equal(
        existsSync(calls) ? readFileSync(calls, 'utf8') : '',
        '',
        'programs that change a broker were called',
      );
      assert.deepEqual(snapshot(CONFIG_DIR), before, `${CONFIG_DIR} changed`);
      // The broker's application was not restarted: the connection is open and works.
      const channel = await connection.createChannel();
      await channel.close();
      assert.equal(closed, false, 'the connection opened before the run was closed');
    } finally {
      await connection.close().catch(() => {});
    }
  });
});
