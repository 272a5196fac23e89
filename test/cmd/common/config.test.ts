import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, configEnvVars, loadConfig, redactedConfig, redactUrl } from '../../../src/cmd/common/config.ts';

describe('configuration', () => {
  it('has working defaults', () => {
    const config = loadConfig({});
    assert.equal(config.amqp.url, 'amqp://guest:guest@127.0.0.1:5672');
    assert.equal(config.rpc.queue, 'rpc_queue');
    assert.equal(config.rpc.timeoutMs, 30000);
    assert.equal(config.server.prefetch, 16);
    assert.equal(config.fib.maxN, 100000);
    assert.equal(config.http.port, 8080);
    assert.equal(config.log.level, 'info');
  });

  it('bounds the dead-letter queue by default and waits for the broker for ever', () => {
    const config = loadConfig({});
    assert.equal(config.rpc.dlqMaxLength, 100000);
    assert.equal(config.rpc.dlqTtlMs, 7 * 24 * 3600 * 1000);
    assert.equal(config.amqp.startupTimeoutMs, 0);
    const set = loadConfig({ RPC_DLQ_MAX_LENGTH: '0', RPC_DLQ_TTL_MS: '60000', AMQP_STARTUP_TIMEOUT_MS: '120000' });
    assert.equal(set.rpc.dlqMaxLength, 0);
    assert.equal(set.rpc.dlqTtlMs, 60000);
    assert.equal(set.amqp.startupTimeoutMs, 120000);
  });

  it('reads every setting from its env var', () => {
    const config = loadConfig({
      RPC_QUEUE: 'work',
      PREFETCH: '4',
      RPC_TIMEOUT_MS: '500',
      FIB_MAX_N: '10',
      HTTP_PORT: '0',
    });
    assert.equal(config.rpc.queue, 'work');
    assert.equal(config.server.prefetch, 4);
    assert.equal(config.rpc.timeoutMs, 500);
    assert.equal(config.fib.maxN, 10);
    assert.equal(config.http.port, 0);
  });

  const invalid: Array<[Record<string, string>, RegExp]> = [
    [{ PREFETCH: '10abc' }, /PREFETCH \(server.prefetch\): must be an integer, got "10abc"/],
    [{ PREFETCH: '0' }, /PREFETCH .*must be between 1 and 65535, got 0/],
    [{ RPC_TIMEOUT_MS: '1.5' }, /RPC_TIMEOUT_MS .*must be an integer/],
    [{ RPC_TIMEOUT_MS: '' }, /RPC_TIMEOUT_MS .*must be an integer/],
    [{ HTTP_PORT: '70000' }, /HTTP_PORT .*between 0 and 65535/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ RPC_QUEUE_TYPE: 'stream' }, /RPC_QUEUE_TYPE/],
    [{ RPC_DLQ_TTL_MS: '4294967296' }, /RPC_DLQ_TTL_MS .*between 0 and 4294967295/],
    [{ RPC_DLQ_MAX_LENGTH: '-1' }, /RPC_DLQ_MAX_LENGTH .*between 0 and/],
    [{ AMQP_STARTUP_TIMEOUT_MS: '5m' }, /AMQP_STARTUP_TIMEOUT_MS .*must be an integer/],
    [{ RPC_QUEUE: 'amq.sneaky' }, /RPC_QUEUE .*reserved prefix/],
    [{ AMQP_URL: 'http://x:supersecret@host' }, /AMQP_URL .*amqp:\/\/ or amqps:\/\//],
    [{ CONFIG_FILE: '/nonexistent/fib.json' }, /CONFIG_FILE .*does not exist/],
  ];
  for (const [env, message] of invalid) {
    it(`stops with a message naming the key for ${JSON.stringify(env)}`, () => {
      assert.throws(
        () => loadConfig(env),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, message);
          assert.doesNotMatch(err.message, /supersecret/);
          return true;
        },
      );
    });
  }

  it('never shows the broker password, in errors or in the logged configuration', () => {
    assert.throws(
      () => loadConfig({ AMQP_URL: 'not a url with supersecret' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /AMQP_URL/);
        assert.doesNotMatch(err.message, /supersecret/);
        return true;
      },
    );
    const config = loadConfig({ AMQP_URL: 'amqp://app:supersecret@broker:5672/%2F' });
    const dumped = JSON.stringify(redactedConfig(config));
    assert.doesNotMatch(dumped, /supersecret/);
    assert.match(dumped, /amqp:\/\/app:\*\*\*@broker:5672/);
    assert.equal(redactUrl('amqps://a:b@h'), 'amqps://a:***@h');
  });

  it('takes several broker URLs separated by commas, and names the wrong one by position only', () => {
    const list = 'amqp://app:s3cret,x@rabbit-0:5672, amqp://app:s3cret,x@rabbit-1:5672';
    const config = loadConfig({ AMQP_URL: list });
    assert.equal(config.amqp.url, list);
    const dumped = JSON.stringify(redactedConfig(config));
    assert.doesNotMatch(dumped, /s3cret/);
    assert.match(dumped, /amqp:\/\/app:\*\*\*@rabbit-0:5672\/?,amqp:\/\/app:\*\*\*@rabbit-1:5672/);
    assert.throws(
      () => loadConfig({ AMQP_URL: 'amqp://app:s3cret@rabbit-0:5672,amqps://app:s3cret@' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /AMQP_URL.*address 2 of 2/);
        assert.doesNotMatch(err.message, /s3cret/);
        return true;
      },
    );
  });

  it('loads CONFIG_FILE, with env vars winning, and refuses unknown keys in it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fib-config-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ rpc: { queue: 'from-file', timeoutMs: 1234 } }));
    const config = loadConfig({ CONFIG_FILE: file, RPC_TIMEOUT_MS: '999' });
    assert.equal(config.rpc.queue, 'from-file');
    assert.equal(config.rpc.timeoutMs, 999);
    writeFileSync(file, JSON.stringify({ rpc: { qeueu: 'typo' } }));
    assert.throws(() => loadConfig({ CONFIG_FILE: file }), /qeueu/);
  });

  it('lists the env vars the chart and README rely on', () => {
    for (const name of [
      'AMQP_URL',
      'RPC_QUEUE',
      'RPC_TIMEOUT_MS',
      'PREFETCH',
      'FIB_MAX_N',
      'HTTP_PORT',
      'LOG_LEVEL',
      'CONFIG_FILE',
      'OTEL_SERVICE_NAME',
    ]) {
      assert.ok(configEnvVars.includes(name), name);
    }
  });
});
