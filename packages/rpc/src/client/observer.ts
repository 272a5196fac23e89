/** Why a reply matched no call in flight. */
export type StrayReply =
  /** The call had already been answered. */
  | 'duplicate'
  /** The call had already failed (timed out, aborted, connection lost). */
  | 'late'
  /** This client never issued its correlation id. */
  | 'unknown';

/**
 * Hooks for metrics, tests or anything else, without the core knowing about them; the
 * server's counterpart is ServerObserver. Every hook is optional.
 */
export interface ClientObserver {
  strayReply?(kind: StrayReply): void;
  /** A request the broker returned as unroutable (no queue, so no server). */
  returned?(): void;
  /** Connected (to `broker`, scheme://host:port) or not. */
  connected?(up: boolean, broker: string): void;
  /**
   * One of the hooks above threw (or its promise rejected): the client logged it and went on.
   * Not called again for its own throw.
   */
  hookFailed?(hook: string): void;
  /** The broker blocked publishing (a resource alarm; `reason` is the broker's) or unblocked it. */
  blocked?(blocked: boolean, broker: string, reason?: string): void;
}

/** The hooks the client calls guarded (see guardHooks); hookFailed is called apart. */
export const CLIENT_HOOKS = ['strayReply', 'returned', 'connected', 'blocked'] as const satisfies ReadonlyArray<
  keyof ClientObserver
>;
// guardHooks drops a hook that is not listed: a new hook left out of the list would never be
// called, so the list must name every hook but hookFailed.
const clientHooksListed: Exclude<keyof ClientObserver, 'hookFailed' | (typeof CLIENT_HOOKS)[number]> extends never
  ? true
  : never = true;
void clientHooksListed;
