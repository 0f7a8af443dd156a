/**
 * The mirror of one provider budget (one shop, one account): a leaky bucket as the provider keeps
 * it, seen from this side. `level` is what the provider would admit now *less what gatehouse has
 * reserved for requests in flight*, so two requests never count on the same points; it refills at
 * `rate` per second up to `capacity - inflight`. Every answer that states the provider's figures
 * resets it; `until` pauses the key (a 429 asking to wait, Stripe's rate limiter).
 *
 * Pure functions over plain numbers, used by the memory store and mirrored in the Redis store's
 * Lua script, so both stores agree to the point.
 */
export interface MirrorState {
  /** 0: no bucket (only pauses apply), as for stripe and the generic headers. */
  capacity: number;
  /** Points regained per second. */
  rate: number;
  level: number;
  /** Time `level` was computed at, ms. */
  at: number;
  /** Points reserved by requests in flight. */
  inflight: number;
  /** Time until which the key is paused, ms; 0 when not. */
  until: number;
  /** Wall-clock time of the answer that last reset the mirror: an older answer settled later must not undo a newer one. */
  resetAt: number;
}

/** The bucket assumed until the provider's first answer. */
export interface BucketShape {
  readonly capacity: number;
  readonly rate: number;
}

/** `id` names the reservation in a shared store, so a settlement finds it (and one that expired is not counted twice). */
export type Reservation = { readonly ok: true; readonly id?: string } | { readonly ok: false; readonly waitMs: number; readonly paused: boolean };

/** What an answer (or a failure) did to a reservation. */
export interface Settlement {
  /** The reservation's id in a shared store. */
  readonly id?: string | undefined;
  /** What the request reserved. */
  readonly reserved: number;
  /** What the provider charged for it: the rest of the reservation goes back. */
  readonly charged: number;
  /** The provider's own figures: they replace the mirror's (less what others hold in flight). */
  readonly reset?: { readonly capacity: number; readonly available: number; readonly rate: number } | undefined;
  /** Wall-clock ms the answer arrived: a reset older than the last one applied only refunds. */
  readonly answeredAt?: number;
  /** Leave the key alone this long, ms. */
  readonly pauseMs?: number | undefined;
}

/** What /admin/budgets and the gauge show of one key. */
export interface MirrorView {
  readonly available: number;
  readonly capacity: number;
  readonly restoreRate: number;
  readonly inflight: number;
  readonly pausedForMs: number;
}

export function freshState(shape: BucketShape, now: number): MirrorState {
  return { capacity: shape.capacity, rate: shape.rate, level: shape.capacity, at: now, inflight: 0, until: 0, resetAt: 0 };
}

export function refill(s: MirrorState, now: number): void {
  if (s.capacity > 0 && now > s.at) s.level = Math.min(s.capacity - s.inflight, s.level + (s.rate * (now - s.at)) / 1000);
  if (now > s.at) s.at = now;
}

/**
 * Takes `cost` points when the bucket holds them. A cost above the whole bucket is let through
 * once the bucket is full (the provider answers it with its own error; waiting would never end).
 */
export function reserve(s: MirrorState, cost: number, now: number): Reservation {
  refill(s, now);
  if (now < s.until) return { ok: false, waitMs: Math.ceil(s.until - now), paused: true };
  if (s.capacity > 0 && cost > 0) {
    const need = Math.min(cost, s.capacity);
    // short because of reservations in flight, too: their settlement wakes the queue before this estimate
    if (s.level < need) return { ok: false, waitMs: Math.max(1, Math.ceil(((need - s.level) * 1000) / s.rate)), paused: false };
  }
  s.level -= cost;
  s.inflight += cost;
  return { ok: true };
}

export function settle(s: MirrorState, x: Settlement, now: number): void {
  refill(s, now);
  s.inflight = Math.max(0, s.inflight - x.reserved);
  if (x.reset !== undefined && (x.answeredAt ?? Infinity) >= s.resetAt) {
    s.resetAt = x.answeredAt ?? s.resetAt;
    s.capacity = x.reset.capacity;
    s.rate = x.reset.rate;
    s.level = x.reset.available - s.inflight;
  } else {
    s.level += x.reserved - x.charged;
  }
  if (s.capacity > 0) s.level = Math.min(s.level, s.capacity - s.inflight);
  if (x.pauseMs !== undefined && x.pauseMs > 0) s.until = Math.max(s.until, now + x.pauseMs);
}

export function viewOf(s: MirrorState, now: number): MirrorView {
  refill(s, now);
  return {
    available: Math.floor(Math.max(0, s.level)),
    capacity: s.capacity,
    restoreRate: s.rate,
    inflight: s.inflight,
    pausedForMs: Math.max(0, Math.ceil(s.until - now)),
  };
}

/**
 * Where mirrors live: this process (memory), or Redis, shared by every replica. A memory store
 * answers synchronously; Redis with a promise, its reservation and settlement atomic.
 */
export interface MirrorStore {
  readonly name: string;
  reserve(key: string, cost: number, shape: BucketShape): Reservation | Promise<Reservation>;
  /** Never rejects: a settlement that cannot be written is dropped (the next answer resets the mirror anyway). */
  settle(key: string, x: Settlement, shape: BucketShape): void | Promise<void>;
  /** The mirror as this process last saw it (Redis: as of its last reply). */
  view(key: string): MirrorView | undefined;
  /** Keys this process knows of, most recently used last. */
  keys(): readonly string[];
  mode(): 'memory' | 'redis' | 'fallback';
  close?(): void;
}

/** Keys kept per memory store; beyond, the least recently used idle one is forgotten. */
const MAX_KEYS = 10_000;

export function createMemoryMirrorStore(name: string, now: () => number): MirrorStore {
  const states = new Map<string, MirrorState>();
  const stateOf = (key: string, shape: BucketShape): MirrorState => {
    let s = states.get(key);
    if (s === undefined) {
      if (states.size >= MAX_KEYS) {
        for (const [k, old] of states) {
          if (old.inflight === 0) {
            states.delete(k);
            break;
          }
        }
      }
      s = freshState(shape, now());
    } else {
      states.delete(key); // re-inserted below: the Map's order is the order of use
    }
    states.set(key, s);
    return s;
  };
  return {
    name,
    reserve: (key, cost, shape) => reserve(stateOf(key, shape), cost, now()),
    settle: (key, x, shape) => settle(stateOf(key, shape), x, now()),
    view(key) {
      const s = states.get(key);
      return s === undefined ? undefined : viewOf(s, now());
    },
    keys: () => [...states.keys()],
    mode: () => 'memory',
  };
}
