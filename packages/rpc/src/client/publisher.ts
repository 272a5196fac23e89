import type { Channel } from 'amqplib';
import { AbortedError, ConnectionLostError, TimeoutError } from '../errors.ts';
import { requestOptions } from '../protocol.ts';
import { untracedPublish } from '../spans.ts';
import type { Attempt } from './attempt.ts';

/**
 * Puts requests on the channel, and holds them back when they may not go yet: at most
 * `maxInFlight` unanswered (a slot each, freed when the call settles), none while the
 * channel is away, none while the socket's buffer is full (until its 'drain').
 */
export class Publisher {
  readonly #queue: string;
  readonly #maxInFlight: number;
  #channel: Channel | undefined;
  #ready: Promise<void> = Promise.resolve();
  #markReady: () => void = () => {};
  #isReady = false;
  /** Set while the socket buffer is full; publishing resumes on the channel's 'drain'. */
  #writable: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  #slotsInUse = 0;
  readonly #slotWaiters: Array<() => void> = [];

  constructor(queue: string, maxInFlight: number) {
    this.#queue = queue;
    this.#maxInFlight = maxInFlight;
  }

  get attached(): boolean {
    return this.#channel !== undefined;
  }

  /** Publishes on `channel` from now on, and releases everyone waiting for one. */
  attach(channel: Channel): void {
    channel.on('drain', () => {
      if (this.#channel !== channel) return;
      this.#writable = undefined;
      this.#drained?.();
    });
    this.#channel = channel;
    this.#isReady = true;
    this.#markReady();
  }

  /**
   * The channel is gone (only `which`, when given, and not a newer one): publishing waits
   * for the next attach(), unless `keepWaiting` is false (closing). Returns the channel
   * detached, if any.
   */
  detach(keepWaiting: boolean, which?: Channel): Channel | undefined {
    const channel = this.#channel;
    if (which !== undefined && channel !== which) return undefined;
    this.#channel = undefined;
    if (this.#isReady && keepWaiting) {
      this.#isReady = false;
      this.#ready = new Promise<void>((resolve) => {
        this.#markReady = resolve;
      });
    }
    return channel;
  }

  /** The fast path: takes a slot if one is free and the request could go out at once. */
  takeSlotNow(): boolean {
    if (this.#slotsInUse < this.#maxInFlight && this.#channel !== undefined && this.#writable === undefined) {
      this.#slotsInUse++;
      return true;
    }
    return false;
  }

  /**
   * Waits for a slot, a channel and a writable socket, but not past the attempt's deadline
   * nor its abort; resolves with the time left, holding a slot.
   */
  async waitForSlot(attempt: Attempt): Promise<number> {
    await this.#acquireSlot(attempt);
    try {
      if (this.#channel === undefined) await waitUntil(this.#ready, attempt);
      if (this.#writable !== undefined) await waitUntil(this.#writable, attempt);
    } catch (err) {
      this.releaseSlot();
      throw err;
    }
    const remaining = attempt.deadline - Date.now();
    if (remaining <= 0) {
      this.releaseSlot();
      throw new TimeoutError(attempt.timeoutMs);
    }
    return remaining;
  }

  /** Publishes the attempt's request, to expire in `remainingMs`. Throws if there is no channel. */
  publish(attempt: Attempt, remainingMs: number): void {
    const channel = this.#channel;
    if (channel === undefined) throw new ConnectionLostError('not connected to the broker');
    const options = requestOptions(attempt, remainingMs);
    // Traced, the call's span is the request's send span and the headers carry its context:
    // published with tracing suppressed, so that instrumentation-amqplib adds no publish span.
    const flowing =
      attempt.traceContext === undefined
        ? channel.publish('', this.#queue, attempt.body, options)
        : untracedPublish(attempt.traceContext, channel, '', this.#queue, attempt.body, options);
    if (!flowing && this.#writable === undefined) {
      this.#writable = new Promise<void>((resume) => {
        this.#drained = resume;
      });
    }
  }

  releaseSlot(): void {
    const next = this.#slotWaiters.shift();
    if (next) next();
    else this.#slotsInUse--;
  }

  async #acquireSlot(attempt: Attempt): Promise<void> {
    if (this.#slotsInUse < this.#maxInFlight) {
      this.#slotsInUse++;
      return;
    }
    let granted!: () => void;
    const slot = new Promise<void>((resolve) => {
      granted = resolve;
    });
    this.#slotWaiters.push(granted);
    try {
      await waitUntil(slot, attempt);
    } catch (err) {
      const index = this.#slotWaiters.indexOf(granted);
      if (index >= 0) this.#slotWaiters.splice(index, 1);
      else this.releaseSlot(); // granted in the same tick as the timeout: hand it on
      throw err;
    }
  }
}

/** Waits for `ready`, but no longer than the attempt's deadline, and not past its abort. */
function waitUntil(ready: Promise<void>, attempt: Attempt): Promise<void> {
  const signal = attempt.signal;
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError(signal?.reason));
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        reject(new TimeoutError(attempt.timeoutMs));
      },
      Math.max(0, attempt.deadline - Date.now()),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
    ready.then(() => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
