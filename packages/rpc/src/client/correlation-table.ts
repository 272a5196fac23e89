import type { Message } from 'amqplib';
import { AbortedError, type RpcError, TimeoutError } from '../errors.ts';
import { decodeReply } from '../protocol.ts';
import type { Attempt } from './attempt.ts';
import { DeadlineHeap } from './deadline-heap.ts';
import type { StrayReply } from './observer.ts';

/** An attempt published and waiting for its reply. */
interface Pending {
  attempt: Attempt;
  resolve(value: unknown): void;
  reject(err: unknown): void;
  /** performance.now() when the attempt times out, and its place in the deadline heap. */
  expiresAt: number;
  heapIndex: number;
  onAbort: (() => void) | undefined;
}

/** How many failed correlation ids are remembered to tell a late reply from a foreign one. */
const LATE_MEMORY = 10_000;

/**
 * The calls in flight by correlation id: matches replies to them, fails them at their
 * deadline (one timer for all, see DeadlineHeap), on abort, or all at once, and tells a
 * duplicate, late or foreign reply apart. Every settled entry is reported to `settled`
 * once, which frees the attempt's publishing slot.
 */
export class CorrelationTable {
  readonly #pending = new Map<string, Pending>();
  readonly #failed = new Set<string>();
  readonly #deadlines = new DeadlineHeap<Pending>((pending) => {
    if (this.#pending.get(pending.attempt.id) === pending) {
      this.#fail(pending, new TimeoutError(pending.attempt.timeoutMs, this.#whyLate()));
    }
  });
  readonly #isOurs: (id: string) => boolean;
  readonly #settled: () => void;
  readonly #stray: (kind: StrayReply) => void;
  readonly #whyLate: () => string | undefined;

  /**
   * `isOurs` says whether an id is one this client issued (to tell a duplicate from a
   * foreign reply); `settled` runs once per entry that leaves; `stray` hears of replies
   * that match nothing; `whyLate`, asked when a call times out, may say what kept its reply.
   */
  constructor(
    isOurs: (id: string) => boolean,
    settled: () => void,
    stray: (kind: StrayReply) => void,
    whyLate: () => string | undefined = () => undefined,
  ) {
    this.#isOurs = isOurs;
    this.#settled = settled;
    this.#stray = stray;
    this.#whyLate = whyLate;
  }

  get size(): number {
    return this.#pending.size;
  }

  /** Waits for the reply to `attempt` for at most `remainingMs`, and not past its signal's abort. */
  track(
    attempt: Attempt,
    remainingMs: number,
    resolve: (value: unknown) => void,
    reject: (err: unknown) => void,
  ): void {
    const pending: Pending = {
      attempt,
      resolve,
      reject,
      expiresAt: performance.now() + remainingMs,
      heapIndex: -1,
      onAbort: undefined,
    };
    const signal = attempt.signal;
    if (signal !== undefined) {
      pending.onAbort = () => {
        if (this.#pending.get(attempt.id) === pending) this.#fail(pending, new AbortedError(signal.reason));
      };
      signal.addEventListener('abort', pending.onAbort, { once: true });
    }
    this.#pending.set(attempt.id, pending);
    this.#deadlines.add(pending);
  }

  /** Drops the entry of an attempt that never went out (its publish threw), without calling it failed. */
  untrack(attempt: Attempt): void {
    const pending = this.#pending.get(attempt.id);
    if (pending?.attempt === attempt) this.#finish(pending);
  }

  /** Settles the call a reply is for, or counts the reply as stray. */
  reply(msg: Message): void {
    const id = msg.properties.correlationId as string | undefined;
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (id === undefined || pending === undefined) {
      this.#stray(this.#strayKind(id));
      return;
    }
    this.#finish(pending);
    try {
      pending.resolve(decodeReply(msg));
    } catch (err) {
      pending.reject(err);
    }
  }

  /** Fails the call with this id, if it is in flight (e.g. its request came back unroutable). */
  fail(id: string, err: RpcError): void {
    const pending = this.#pending.get(id);
    if (pending !== undefined) this.#fail(pending, err);
  }

  /** Fails every call in flight with the error `make` returns. */
  failAll(make: () => RpcError): void {
    for (const pending of this.#pending.values()) this.#fail(pending, make());
  }

  /** Stops the deadline timer; call after failAll when closing. */
  clear(): void {
    this.#deadlines.clear();
  }

  #strayKind(id: string | undefined): StrayReply {
    if (id !== undefined && this.#failed.delete(id)) return 'late';
    return id !== undefined && this.#isOurs(id) ? 'duplicate' : 'unknown';
  }

  #fail(pending: Pending, err: RpcError): void {
    this.#finish(pending);
    if (this.#failed.size >= LATE_MEMORY) {
      const oldest = this.#failed.values().next().value;
      if (oldest !== undefined) this.#failed.delete(oldest);
    }
    this.#failed.add(pending.attempt.id);
    pending.reject(err);
  }

  /** Forgets a settled call: its entry, timeout and abort listener; frees its slot. */
  #finish(pending: Pending): void {
    this.#pending.delete(pending.attempt.id);
    this.#deadlines.delete(pending);
    if (pending.onAbort !== undefined) pending.attempt.signal?.removeEventListener('abort', pending.onAbort);
    this.#settled();
  }
}
