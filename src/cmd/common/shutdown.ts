import type { Logger } from 'pino';

export type ShutdownStep = () => Promise<unknown>;

/**
 * Runs `steps` in order (the caller lists them in reverse order of opening) on the first
 * SIGTERM or SIGINT, then exits with `exitCode()`; a second signal, or passing the
 * deadline, forces exit 1 at once. Returns the function so fatal errors can call it.
 */
export function installShutdown(
  log: Logger,
  deadlineMs: number,
  steps: ShutdownStep[],
  exitCode: () => number = () => 0,
): (reason: string) => void {
  let stopping = false;
  const shutdown = (reason: string) => {
    if (stopping) {
      log.warn({ reason }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ reason }, 'shutting down');
    setTimeout(() => {
      log.error({ deadlineMs }, 'shutdown did not finish in time: exiting');
      process.exit(1);
    }, deadlineMs).unref();
    void (async () => {
      for (const step of steps) {
        try {
          await step();
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'shutdown step failed');
        }
      }
      process.exit(exitCode());
    })();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  return shutdown;
}
