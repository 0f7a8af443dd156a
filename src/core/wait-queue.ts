/**
 * A priority waiting room (a quota with `onExceed: queue`, a provider budget). Requests that
 * found no capacity wait in a lane per key, released strictly by priority (high, then normal, then low; first come
 * first served within a class). Only the head of a lane asks the store: the others wait behind
 * it, so a newcomer never overtakes a request of its own or a higher class. A waiter leaves
 * when it is granted, refused (by another of its limits), when `maxWait` passes, or at once
 * when its client disconnects.
 *
 * No I/O here: the caller's `attempt` talks to the store and says "done" or "wait N ms". The
 * only side effects are timers, so tests drive it with fake timers.
 */

export type Priority = 'high' | 'normal' | 'low';

const CLASS: Readonly<Record<Priority, number>> = { high: 0, normal: 1, low: 2 };

/** What one try at the head of the lane came to. */
export type AttemptOutcome<T> = { readonly done: T } | { readonly waitMs: number };

export interface WaitOptions<T> {
  readonly priority: Priority;
  /** Asked when the waiter is at the head of its lane and the lane is not waiting for a refill. */
  readonly attempt: () => AttemptOutcome<T> | Promise<AttemptOutcome<T>>;
  /** The answer when `maxWait` passes; `lastWaitMs` is the latest refill estimate of the lane. */
  readonly expired: (lastWaitMs: number) => T;
  /** A result that came in after the waiter had left (expired or cancelled): undo it (refund). */
  readonly abandoned?: (result: T) => void;
  /** Aborts when the client goes away: the waiter leaves at once and resolves to undefined. */
  readonly signal?: AbortSignal;
  /** The store just said how long until a token: the first try waits that long. */
  readonly firstWaitMs?: number;
}

export interface WaitQueue {
  /** Waiters in all lanes. */
  readonly size: number;
  isFull(): boolean;
  /** Whether requests for this key are waiting: a newcomer must then queue behind them. */
  has(key: string): boolean;
  /** Waits in the lane of `key`; resolves to the final result, or undefined when cancelled. */
  wait<T>(key: string, options: WaitOptions<T>): Promise<T | undefined>;
  /** Waiters by priority class, for /admin/quotas. */
  depth(): { readonly high: number; readonly normal: number; readonly low: number };
  /**
   * Capacity came back before the lane's estimate (a refund, a freed concurrency slot): the head
   * of the lane of `key` (of every lane when undefined) tries again now instead of at its timer.
   */
  wake(key?: string): void;
}

export interface WaitQueueOptions {
  readonly maxQueue: number;
  readonly maxWaitMs: number;
  /** Told of every change in the number of waiters (+1 / -1): the queue-depth gauge. */
  readonly onDepth?: (delta: number) => void;
}

interface Waiter {
  readonly cls: number;
  readonly options: WaitOptions<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  expiry: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
  /** It has its answer; a late attempt result goes to `abandoned`. */
  left: boolean;
}

interface Lane {
  readonly key: string;
  readonly classes: [Waiter[], Waiter[], Waiter[]];
  size: number;
  busy: boolean;
  refill: NodeJS.Timeout | undefined;
  lastWaitMs: number;
}

export function createWaitQueue(options: WaitQueueOptions): WaitQueue {
  const { maxQueue, maxWaitMs, onDepth } = options;
  const lanes = new Map<string, Lane>();
  let size = 0;

  function head(lane: Lane): Waiter | undefined {
    for (const list of lane.classes) if (list.length > 0) return list[0];
    return undefined;
  }

  /** Takes a waiter out of its lane (once) and settles it. */
  function leave(lane: Lane, w: Waiter): void {
    if (w.left) return;
    w.left = true;
    clearTimeout(w.expiry);
    if (w.onAbort !== undefined) w.options.signal?.removeEventListener('abort', w.onAbort);
    const list = lane.classes[w.cls]!;
    const at = list.indexOf(w);
    if (at >= 0) list.splice(at, 1);
    lane.size--;
    size--;
    onDepth?.(-1);
    if (lane.size === 0 && !lane.busy) {
      clearTimeout(lane.refill);
      lanes.delete(lane.key);
    }
  }

  function pump(lane: Lane): void {
    if (lane.busy || lane.refill !== undefined) return;
    const w = head(lane);
    if (w === undefined) return;
    lane.busy = true;
    let outcome: AttemptOutcome<unknown> | Promise<AttemptOutcome<unknown>>;
    try {
      outcome = w.options.attempt();
    } catch (err) {
      settle(lane, w, err, undefined);
      return;
    }
    if (outcome instanceof Promise) {
      outcome.then(
        (o) => settle(lane, w, undefined, o),
        (err: unknown) => settle(lane, w, err, undefined),
      );
    } else {
      settle(lane, w, undefined, outcome);
    }
  }

  function settle(lane: Lane, w: Waiter, err: unknown, outcome: AttemptOutcome<unknown> | undefined): void {
    lane.busy = false;
    if (outcome !== undefined && 'waitMs' in outcome) {
      // the bucket is empty whoever is at the head now: everyone waits for the refill
      lane.lastWaitMs = outcome.waitMs;
      if (lane.size > 0) {
        lane.refill = setTimeout(refilled, Math.max(1, outcome.waitMs), lane);
        return;
      }
    } else if (w.left) {
      if (outcome !== undefined) w.options.abandoned?.(outcome.done);
    } else {
      leave(lane, w);
      if (outcome !== undefined) w.resolve(outcome.done);
      else w.reject(err);
    }
    if (lane.size === 0) {
      clearTimeout(lane.refill);
      lanes.delete(lane.key);
      return;
    }
    pump(lane);
  }

  function wakeLane(lane: Lane): void {
    if (lane.refill === undefined) return; // trying now, or about to
    clearTimeout(lane.refill);
    lane.refill = undefined;
    pump(lane);
  }

  function refilled(lane: Lane): void {
    lane.refill = undefined;
    pump(lane);
  }

  return {
    get size() {
      return size;
    },
    isFull: () => size >= maxQueue,
    has: (key) => lanes.has(key),
    wait<T>(key: string, opts: WaitOptions<T>): Promise<T | undefined> {
      return new Promise<T | undefined>((resolve, reject) => {
        if (opts.signal?.aborted) {
          resolve(undefined);
          return;
        }
        let lane = lanes.get(key);
        const fresh = lane === undefined;
        if (lane === undefined) {
          lane = { key, classes: [[], [], []], size: 0, busy: false, refill: undefined, lastWaitMs: opts.firstWaitMs ?? 0 };
          lanes.set(key, lane);
        }
        const w: Waiter = {
          cls: CLASS[opts.priority],
          options: opts as WaitOptions<unknown>,
          resolve: resolve as (v: unknown) => void,
          reject,
          expiry: undefined,
          onAbort: undefined,
          left: false,
        };
        lane.classes[w.cls]!.push(w);
        lane.size++;
        size++;
        onDepth?.(1);
        const l = lane;
        w.expiry = setTimeout(() => {
          if (w.left) return;
          leave(l, w);
          resolve(opts.expired(l.lastWaitMs));
        }, maxWaitMs);
        if (opts.signal !== undefined) {
          w.onAbort = () => {
            leave(l, w);
            resolve(undefined);
          };
          opts.signal.addEventListener('abort', w.onAbort, { once: true });
        }
        if (fresh && (opts.firstWaitMs ?? 0) > 0) lane.refill = setTimeout(refilled, opts.firstWaitMs, lane);
        else pump(lane);
      });
    },
    wake(key) {
      if (key !== undefined) {
        const lane = lanes.get(key);
        if (lane !== undefined) wakeLane(lane);
        return;
      }
      for (const lane of lanes.values()) wakeLane(lane);
    },
    depth() {
      let high = 0;
      let normal = 0;
      let low = 0;
      for (const lane of lanes.values()) {
        high += lane.classes[0].length;
        normal += lane.classes[1].length;
        low += lane.classes[2].length;
      }
      return { high, normal, low };
    },
  };
}
