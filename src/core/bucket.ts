/**
 * The token bucket behind every quota and every paced delivery, in its GCRA form (the Generic Cell Rate Algorithm, as in
 * ATM networks, redis-cell and Stripe's limiter): instead of a token count and a refill timer, a
 * bucket is one number, its "theoretical arrival time" `tat` — the instant at which it will be
 * full again. A bucket refilled at `limit` per `per` holding `burst` tokens has an emission
 * interval `T = per / limit`; taking a token moves `tat` forward by `T`, and a take is allowed
 * while `tat` stays within `burst × T` of now. Exactly a token bucket, with no timers and a single
 * value to store, which is what makes the Redis version one atomic script.
 *
 * Pure functions over plain numbers (milliseconds): the quota's memory store calls them, its Redis
 * script (quota/stores.ts) is their transcription, and the conformance suite checks that both
 * agree; a delivery's pace (pace.ts) is one bucket in memory. On the ground floor so that every
 * concern counts tokens the same way.
 */

/** A quota's bucket, compiled from `limit`, `per` and `burst`. */
export interface BucketShape {
  /** `per / limit`: one token comes back every intervalMs. */
  readonly intervalMs: number;
  /** Capacity in tokens (`burst`, default `limit`). */
  readonly burst: number;
  /** The quota's key space: a memory store counts and bounds buckets per space ('' when unset). */
  readonly space?: string;
  /** `maxKeys`: buckets a memory store keeps for this space at most (DEFAULT_MAX_KEYS when unset). */
  readonly maxKeys?: number;
}

/** `maxKeys` when a quota sets none. */
export const DEFAULT_MAX_KEYS = 100_000;

/** One bucket's answer for one request. */
export interface BucketResult {
  /** Whole tokens left after this request (or now, when the request was refused). */
  readonly remaining: number;
  /** Until the bucket is full again: RateLimit's `t=`. */
  readonly resetMs: number;
  /** Until this bucket would have had a token for the request; 0 when it had one. */
  readonly retryAfterMs: number;
}

/** Float slack: `tat` values are sums of fractional intervals. */
const EPSILON = 1e-6;

export function shapeOf(limit: number, perMs: number, burst: number | undefined): BucketShape {
  return { intervalMs: perMs / limit, burst: burst ?? limit };
}

/** The stored `tat` brought up to now: a bucket never holds more than full. */
export const currentTat = (stored: number | undefined, nowMs: number): number => (stored === undefined || stored < nowMs ? nowMs : stored);

/** Whether a bucket at `tat` has a token at `nowMs`. */
export const hasToken = (tat: number, nowMs: number, shape: BucketShape): boolean =>
  tat + shape.intervalMs - nowMs <= shape.intervalMs * shape.burst + EPSILON;

/** The answer for a bucket at `tat` (already moved forward when the token was taken). */
export function resultAt(tat: number, nowMs: number, shape: BucketShape, refused: boolean): BucketResult {
  const used = tat - nowMs;
  const capacity = shape.intervalMs * shape.burst;
  const over = tat + shape.intervalMs - nowMs - capacity;
  return {
    remaining: Math.max(0, Math.floor((capacity - used) / shape.intervalMs + EPSILON)),
    resetMs: Math.max(0, Math.ceil(used - EPSILON)),
    retryAfterMs: refused && over > EPSILON ? Math.ceil(over) : 0,
  };
}

/** `tat` after giving a token back: never further back than now (a full bucket). */
export const refundedTat = (tat: number, nowMs: number, shape: BucketShape): number => Math.max(nowMs, tat - shape.intervalMs);
