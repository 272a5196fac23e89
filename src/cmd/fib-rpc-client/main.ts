import { shutdownTelemetry } from '../../telemetry/bootstrap.ts';
import { EXIT } from './exit-codes.ts';
import { run } from './run.ts';

/**
 * SIGTERM and SIGINT abort the run: a load stops and reports, a single call is abandoned
 * (exit 8). In a container node runs as PID 1, which has no default action for SIGTERM, so
 * without a handler deleting the pod waits out its whole grace period. A second signal, or
 * a stop that still runs after FORCED_EXIT_MS (e.g. a connection attempt to a silent
 * broker), exits at once.
 */
const interrupt = new AbortController();
const FORCED_EXIT_MS = 3000;
function interrupted(signal: NodeJS.Signals): void {
  const now = () => {
    process.stderr.write(`fib-rpc-client: interrupted by ${signal}\n`);
    process.exit(EXIT.interrupted);
  };
  if (interrupt.signal.aborted) now();
  interrupt.abort(new Error(`interrupted by ${signal}`));
  setTimeout(now, FORCED_EXIT_MS).unref();
}
process.on('SIGTERM', interrupted);
process.on('SIGINT', interrupted);

const live = process.stderr.isTTY === true;
const { code } = await run(
  process.argv.slice(2),
  {
    // Awaited, so that piped output is complete before the exit below.
    out: (line) => new Promise((resolve) => process.stdout.write(`${line}\n`, () => resolve())),
    err: (line) => process.stderr.write(`${line}\n`),
    ...(live ? { progress: (line: string) => process.stderr.write(`\r\x1b[K${line}`) } : {}),
  },
  interrupt.signal,
).catch((err: unknown) => {
  process.stderr.write(`fib-rpc-client: unexpected error: ${err instanceof Error ? err.message : String(err)}\n`);
  return { code: EXIT.unexpected };
});
// A one-shot command flushes its spans but does not wait long for a collector that is not there.
await shutdownTelemetry(1000);
// Output is written (stdout was awaited; stderr to pipes and files is synchronous), and an
// exporter retrying a dead collector must not keep the process alive.
process.exit(code);
