import type { RpcError } from '../errors.ts';

/**
 * What happened to one delivery. ok: answered; invalid: refused before work (error reply);
 * failed: the handler threw (error reply); dead_lettered: unusable and nobody to tell;
 * expired: its deadline had passed.
 */
export type Outcome = 'ok' | 'invalid' | 'failed' | 'dead_lettered' | 'expired';

/**
 * Hooks for metrics, tracing or tests, without the core knowing about them; the client's
 * counterpart is ClientObserver. Every hook is optional.
 */
export interface ServerObserver {
  /** Once per delivery after it is settled (acked or dead-lettered); `error` carries a failure. */
  settled?(method: string, outcome: Outcome, seconds: number, error?: RpcError<string>): void;
  inFlight?(count: number): void;
  /** Connected and consuming (on `broker`, scheme://host:port) or not. */
  connected?(up: boolean, broker: string): void;
  /**
   * The broker blocked the connection (a memory or disk alarm: replies and acks wait unread
   * until it clears; `reason` is the broker's) or unblocked it. A lost connection unblocks.
   */
  blocked?(blocked: boolean, broker: string, reason?: string): void;
  /** A delivery the broker flags as redelivered: an earlier consumer took it and never acked it. */
  redelivered?(): void;
  /** A reply the broker returned as unroutable: its reply_to names no queue (never asked over direct reply-to). */
  unroutable?(): void;
  /**
   * One of the hooks above threw (or its promise rejected): the server logged it and went on.
   * Not called again for its own throw.
   */
  hookFailed?(hook: string): void;
}

/** The hooks the server calls guarded (see guardHooks); hookFailed is called apart. */
export const SERVER_HOOKS = [
  'settled',
  'inFlight',
  'connected',
  'redelivered',
  'unroutable',
  'blocked',
] as const satisfies ReadonlyArray<keyof ServerObserver>;
// guardHooks drops a hook that is not listed: a new hook left out of the list would never be
// called, so the list must name every hook but hookFailed.
const serverHooksListed: Exclude<keyof ServerObserver, 'hookFailed' | (typeof SERVER_HOOKS)[number]> extends never
  ? true
  : never = true;
void serverHooksListed;
