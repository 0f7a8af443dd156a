/**
 * Timeouts that all have the same duration, such as one route's `perTryTimeout`: they expire in
 * the order they were started, so a FIFO queue behind one native timer serves them all. Adding
 * and cancelling are O(1) and create no timer (undici keeps its hot-path timeouts off Node's
 * timer lists for the same reason); the timer is re-armed only when it fires.
 */
export interface TimeoutEntry<T> {
  /** undefined once cancelled or expired. */
  item: T | undefined;
  readonly at: number;
}

export interface TimeoutQueue<T> {
  /** Starts a timeout for `item`: `onExpire(item)` runs after the queue's duration unless cancelled. */
  add(item: T): TimeoutEntry<T>;
  cancel(entry: TimeoutEntry<T>): void;
  /** Timeouts started and neither expired nor cancelled yet (for tests). */
  readonly size: number;
}

export function createTimeoutQueue<T>(durationMs: number, onExpire: (item: T) => void, now: () => number = () => performance.now()): TimeoutQueue<T> {
  let entries: TimeoutEntry<T>[] = [];
  let head = 0;
  let live = 0;
  let timer: NodeJS.Timeout | undefined;

  const skipDone = () => {
    while (head < entries.length && entries[head]!.item === undefined) head++;
    if (head === entries.length) {
      entries = [];
      head = 0;
    } else if (head > 1024 && head * 2 > entries.length) {
      entries = entries.slice(head);
      head = 0;
    }
  };

  const arm = () => {
    if (timer === undefined && head < entries.length) timer = setTimeout(sweep, Math.max(0, entries[head]!.at - now()));
  };

  function sweep(): void {
    timer = undefined;
    const t = now();
    while (head < entries.length) {
      const e = entries[head]!;
      if (e.item !== undefined) {
        if (e.at > t) break;
        const item = e.item;
        e.item = undefined;
        live--;
        onExpire(item);
      }
      head++;
    }
    skipDone();
    arm();
  }

  return {
    add(item) {
      const entry: TimeoutEntry<T> = { item, at: now() + durationMs };
      entries.push(entry);
      live++;
      arm();
      return entry;
    },
    cancel(entry) {
      if (entry.item === undefined) return;
      entry.item = undefined;
      live--;
      if (entries[head] === entry) skipDone();
    },
    get size() {
      return live;
    },
  };
}
