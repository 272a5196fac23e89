import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionFailedError, InvalidRequestError } from '@fib-rpc/rpc';
import { UsageError } from '../../../src/cmd/fib-rpc-client/cli.ts';
import { EXIT } from '../../../src/cmd/fib-rpc-client/exit-codes.ts';
import { run } from '../../../src/cmd/fib-rpc-client/run.ts';
import { freePort } from '../../support/ports.ts';

/** Runs the CLI as a function, keeping what it writes. */
async function runCli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const result = await run(
    argv,
    {
      out: async (line) => {
        out.push(line);
      },
      err: (line) => err.push(line),
    },
    new AbortController().signal,
    env,
  );
  return { ...result, out: out.join('\n'), err: err.join('\n') };
}

describe('the client CLI as a function', () => {
  it('returns its exit code and the failure behind it instead of throwing', async () => {
    const usage = await runCli(['--concurrency', 'many', '5']);
    assert.equal(usage.code, EXIT.invalidInput);
    assert.ok(usage.error instanceof UsageError);
    assert.match(usage.err, /--concurrency must be an integer/);

    const invalid = await runCli(['-3']);
    assert.equal(invalid.code, EXIT.invalidInput);
    assert.ok(invalid.error instanceof InvalidRequestError);
    assert.match(invalid.err, /invalid input: n must not be negative/);

    const help = await runCli(['--help']);
    assert.deepEqual([help.code, help.error], [EXIT.ok, undefined]);
    assert.match(help.out, /^Usage:/);
  });

  it('says which brokers it tried when none answers, with exit 6', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const down = await runCli(['5'], {
      AMQP_URL: `amqp://guest:guest@127.0.0.1:${a},amqp://guest:guest@127.0.0.1:${b}`,
    });
    assert.equal(down.code, EXIT.connection);
    assert.ok(down.error instanceof ConnectionFailedError);
    assert.match(down.err, new RegExp(`any of the 2 brokers: amqp://127.0.0.1:${a}: .*; amqp://127.0.0.1:${b}: `));
    assert.doesNotMatch(down.err, /guest/);
  });
});
