/** Something that times out at `expiresAt` (performance.now() ms); `heapIndex` is the heap's. */
export interface Expiring {
  expiresAt: number;
  heapIndex: number;
}

/**
 * Timeouts for many calls on one timer: a min-heap of deadlines with the timer armed for
 * the earliest. Adding a call with a later deadline than the armed one (the usual case:
 * same timeout, later start) and removing one cost no timer work at all; the timer is
 * re-armed only when it fires or an earlier deadline comes in. A call expires no sooner
 * than its deadline. While nothing waits the timer is unref'd, so it never keeps the
 * process alive, yet a lone caller's next call (usually) finds it armed early enough.
 */
export class DeadlineHeap<T extends Expiring> {
  readonly #items: T[] = [];
  readonly #onExpired: (item: T) => void;
  #timer: NodeJS.Timeout | undefined;
  #armedAt = Number.POSITIVE_INFINITY;
  /** The timer counts as an active handle only while something waits. */
  #referenced = false;

  constructor(onExpired: (item: T) => void) {
    this.#onExpired = onExpired;
  }

  get size(): number {
    return this.#items.length;
  }

  add(item: T): void {
    const items = this.#items;
    item.heapIndex = items.length;
    items.push(item);
    this.#up(item.heapIndex);
    if (item.expiresAt < this.#armedAt) this.#arm(item.expiresAt);
    else if (!this.#referenced) {
      this.#timer?.ref();
      this.#referenced = true;
    }
  }

  delete(item: T): void {
    const index = item.heapIndex;
    if (index < 0) return;
    item.heapIndex = -1;
    const items = this.#items;
    const last = items.pop() as T;
    if (index < items.length) {
      items[index] = last;
      last.heapIndex = index;
      this.#down(index);
      this.#up(last.heapIndex);
    }
    if (items.length === 0 && this.#referenced) {
      this.#timer?.unref();
      this.#referenced = false;
    }
  }

  /** Stops the timer and forgets every item without expiring any. */
  clear(): void {
    for (const item of this.#items) item.heapIndex = -1;
    this.#items.length = 0;
    this.#disarm();
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = setTimeout(this.#fire, Math.max(0, at - performance.now()));
    this.#referenced = true;
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    this.#referenced = false;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    this.#referenced = false;
    const now = performance.now();
    const items = this.#items;
    while (items.length > 0 && (items[0] as T).expiresAt <= now) {
      const item = items[0] as T;
      this.delete(item);
      this.#onExpired(item);
    }
    // The timer may fire early (the earliest call was answered since): wait for the next one.
    if (items.length > 0 && this.#timer === undefined) this.#arm((items[0] as T).expiresAt);
  };

  #up(index: number): void {
    const items = this.#items;
    const item = items[index] as T;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = items[parentIndex] as T;
      if (parent.expiresAt <= item.expiresAt) break;
      items[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    items[index] = item;
    item.heapIndex = index;
  }

  #down(index: number): void {
    const items = this.#items;
    const length = items.length;
    const item = items[index] as T;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= length) break;
      const right = child + 1;
      if (right < length && (items[right] as T).expiresAt < (items[child] as T).expiresAt) child = right;
      const smaller = items[child] as T;
      if (smaller.expiresAt >= item.expiresAt) break;
      items[index] = smaller;
      smaller.heapIndex = index;
      index = child;
    }
    items[index] = item;
    item.heapIndex = index;
  }
}
