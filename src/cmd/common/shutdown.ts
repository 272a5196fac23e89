import type { Logger } from 'pino';

export type ShutdownStep = () => Promise<unknown>;

/** Starts the shutdown (a second call exits 1 at once); `started` says whether one is under way. */
export interface Shutdown {
  (reason: string): void;
  readonly started: boolean;
}

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
): Shutdown {
  let stopping = false;
  const run = (reason: string) => {
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
  const shutdown = Object.defineProperty(run, 'started', { get: () => stopping }) as Shutdown;
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  return shutdown;
}

/**
 * An uncaught exception or an unhandled rejection is logged and ends the process through
 * `fatal` (the program's shutdown, with exit 1): it says what happened, in the log's JSON,
 * where node alone would print a stack trace and exit without draining.
 */
export function onFatalError(log: Logger, fatal: (reason: string) => void): void {
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    fatal('uncaughtException');
  });
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: reason }, 'unhandled rejection');
    fatal('unhandledRejection');
  });
}
