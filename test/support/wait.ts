import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `probe` until it gives a value (anything but undefined or false) and returns it; fails
 * naming `what` after `timeoutMs`. Tests wait on what they can observe, never on a fixed sleep.
 */
export async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}
