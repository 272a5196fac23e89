/**
 * The image's files without an image engine (there is none here): the Dockerfile's prod-deps
 * stage (`npm ci --omit=dev` on package.json, package-lock.json and the workspace package's
 * manifest) and its runtime stage's copies, done in a temporary directory, then the programs
 * started from there: the server answers a call of the client over the broker. What the
 * Dockerfile copies is checked line by line in test/chart/repo.test.ts. Needs the build
 * (npm test builds first) and the registry or npm's cache.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AMQP_URL, BrokerAdmin, uniqueQueue } from '../support/broker.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
let app: string;
let admin: BrokerAdmin;

before(async () => {
  admin = await BrokerAdmin.open();
  app = mkdtempSync(join(tmpdir(), 'fib-rpc-image-'));
  // prod-deps: the manifests, then npm ci without devDependencies.
  for (const file of ['package.json', 'package-lock.json', 'packages/rpc/package.json']) {
    mkdirSync(join(app, file, '..'), { recursive: true });
    cpSync(join(root, file), join(app, file));
  }
  const ci = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], {
    cwd: app,
    encoding: 'utf8',
    timeout: 240_000,
  });
  assert.equal(ci.status, 0, `npm ci --omit=dev: ${ci.stdout}\n${ci.stderr}`);
  // runtime: the builds and bin/, as the Dockerfile copies them.
  for (const dir of ['dist', 'packages/rpc/dist', 'bin']) cpSync(join(root, dir), join(app, dir), { recursive: true });
});

after(async () => {
  await admin?.close();
  if (app) rmSync(app, { recursive: true, force: true });
});

describe('the runtime image’s files (prod-deps install and the runtime copies)', () => {
  it('link the workspace package and hold no development package', () => {
    const link = join(app, 'node_modules/@fib-rpc/rpc');
    assert.ok(lstatSync(link).isSymbolicLink(), 'npm ci --omit=dev links the workspace package');
    assert.equal(readlinkSync(link), '../../packages/rpc');
    for (const dev of ['typescript', '@biomejs/biome', 'kubernetes-models', '@types/convict']) {
      assert.ok(!existsSync(join(app, 'node_modules', dev)), `${dev} is a development package`);
    }
    for (const prod of ['amqplib', '@opentelemetry/api', 'pino', 'convict']) {
      assert.ok(existsSync(join(app, 'node_modules', prod)), `${prod} is installed`);
    }
  });

  it('run the server and the client: a call is answered', async () => {
    const queue = admin.track(uniqueQueue('image-layout'));
    const env = {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      AMQP_URL,
      RPC_QUEUE: queue,
      HTTP_PORT: '0',
      OTEL_SDK_DISABLED: 'true',
    };
    const server = spawn(process.execPath, ['bin/fib-rpc-server.js'], {
      cwd: app,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let logs = '';
    server.stderr.on('data', (d: Buffer) => {
      logs += d;
    });
    try {
      const deadline = Date.now() + 15_000;
      while (!logs.includes('awaiting RPC requests')) {
        assert.ok(Date.now() < deadline && server.exitCode === null, `the server did not start: ${logs}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const client = spawnSync(process.execPath, ['bin/fib-rpc-client.js', '30'], {
        cwd: app,
        env,
        encoding: 'utf8',
        timeout: 20_000,
      });
      assert.equal(client.status, 0, client.stderr);
      assert.equal(client.stdout, '832040\n');
    } finally {
      server.kill('SIGTERM');
      const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
      await once(server, 'exit');
      clearTimeout(timer);
    }
  });
});
