/** The first wait and the cap of a backoff. */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/**
 * Capped exponential backoff with full jitter: the wait after `attempt` (from 0) failed
 * attempts. Full jitter spreads many processes' attempts over the whole interval, so a
 * broker that comes back is not hit by every replica at once. Reconnection and call
 * retries both wait with it.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  return random() * Math.min(policy.maxMs, policy.initialMs * 2 ** attempt);
}
