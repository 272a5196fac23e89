import type { Logger } from './logger.ts';

/**
 * Calls into code that is not the library's (observer hooks) made safe: a hook that throws,
 * or returns a promise that rejects, is reported to `failed` and goes no further. A metrics
 * hook with a bug must not fail a request, end a drain half-way, or, behind an async
 * handler, become an unhandled rejection that ends the process.
 */
export function guardHooks<T extends object>(
  hooks: T,
  names: ReadonlyArray<keyof T & string>,
  failed: (hook: string, err: unknown) => void,
): T {
  const safe: Record<string, (...args: unknown[]) => void> = {};
  for (const name of names) {
    const hook = hooks[name];
    if (typeof hook !== 'function') continue;
    safe[name] = (...args: unknown[]) => {
      try {
        const returned: unknown = hook.apply(hooks, args);
        if (isThenable(returned)) returned.then(undefined, (err: unknown) => failed(name, err));
      } catch (err) {
        failed(name, err);
      }
    };
  }
  return safe as T;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** A thrown value for a log line: its message when it is an Error. */
export function thrownMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** An observer's hooks guarded, and how many of their calls have thrown so far. */
export interface GuardedObserver<T> {
  readonly hooks: T;
  failures(): number;
}

/**
 * `observer`'s hooks `names` guarded: a throw is logged at warn, counted, and reported to
 * the observer's own hookFailed (itself guarded, and never reported to itself again).
 */
export function guardObserver<T extends { hookFailed?(hook: string): void }>(
  observer: T,
  names: ReadonlyArray<keyof T & string>,
  log: Logger,
): GuardedObserver<T> {
  let failures = 0;
  const failed = (hook: string, err: unknown) => {
    failures++;
    log.warn({ hook, err: thrownMessage(err) }, 'an observer hook threw; the call it reported went on');
    try {
      observer.hookFailed?.(hook);
    } catch (again) {
      log.warn({ hook: 'hookFailed', err: thrownMessage(again) }, 'an observer hook threw');
    }
  };
  return { hooks: guardHooks(observer, names, failed), failures: () => failures };
}
