import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const shutdownModule = fileURLToPath(new URL('../../../src/cmd/common/shutdown.ts', import.meta.url));

/** A process whose only shutdown step never finishes, as a drain stuck on hung work would. */
function stuckProcess(deadlineMs: number) {
  const script = `
    import pino from 'pino';
    import { installShutdown } from ${JSON.stringify(shutdownModule)};
    installShutdown(pino({ level: 'silent' }), ${deadlineMs}, [() => new Promise(() => {})]);
    setInterval(() => {}, 1000);
    process.stdout.write('ready\\n');
  `;
  return spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
}

describe('shutdown', () => {
  it('a second signal forces exit 1 while the first is still draining', async () => {
    const child = stuckProcess(60_000);
    await once(child.stdout, 'data');
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(child.exitCode, null, 'still draining after the first signal');
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    assert.equal(code, 1);
  });

  it('the deadline forces exit 1 when a step hangs', async () => {
    const child = stuckProcess(300);
    await once(child.stdout, 'data');
    const started = Date.now();
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 1);
    assert.ok(Date.now() - started < 3000);
  });

  for (const [fault, code] of [
    ['an unhandled rejection', 'Promise.reject(new Error("nobody catches this"));'],
    ['an uncaught exception', 'setTimeout(() => { throw new Error("nobody catches this"); }, 0);'],
  ] as const) {
    it(`${fault} is logged, runs the shutdown steps and exits 1`, async () => {
      const script = `
        import pino from 'pino';
        import { installShutdown, onFatalError } from ${JSON.stringify(shutdownModule)};
        let exitCode = 0;
        const log = pino({ level: 'info' }, pino.destination({ dest: 1, sync: true }));
        const shutdown = installShutdown(log, 5000, [async () => process.stdout.write('step ran\\n')], () => exitCode);
        onFatalError(log, (reason) => { exitCode = 1; shutdown(reason); });
        setInterval(() => {}, 1000);
        ${code}
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const [exit] = await once(child, 'exit');
      clearTimeout(timer);
      assert.equal(exit, 1, out);
      assert.match(out, /"level":60.*nobody catches this/);
      assert.match(out, /step ran/);
    });
  }
});
