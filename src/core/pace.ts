import { currentTat, hasToken, type BucketShape } from './bucket.js';

/**
 * The pace of deliveries to one destination (`rate: { limit, per, burst }`): one token bucket, in
 * memory, in its GCRA form (bucket.ts). A delivery takes a token before its try; when there is
 * none it is not tried and not counted, only put off by the wait this answers. Pure arithmetic
 * over the caller's clock: no timers, nothing to close.
 */
export interface Pace {
  /** Takes a token at `nowMs`: 0 when one was taken, else the ms until one will be there. */
  take(nowMs: number): number;
  /** Gives back a token taken for a try that was not made after all (shutdown, lease lost). */
  refund(nowMs: number): void;
}

/** A pace that never waits: a destination without `rate`. */
export const UNPACED: Pace = { take: () => 0, refund: () => undefined };

export function createPace(shape: BucketShape): Pace {
  let tat: number | undefined;
  return {
    take(nowMs) {
      const t = currentTat(tat, nowMs);
      if (hasToken(t, nowMs, shape)) {
        tat = t + shape.intervalMs;
        return 0;
      }
      // the token comes when tat has drawn back to within burst intervals of now
      return Math.max(1, Math.ceil(t + shape.intervalMs - nowMs - shape.intervalMs * shape.burst));
    },
    refund(nowMs) {
      if (tat !== undefined) tat = Math.max(nowMs, tat - shape.intervalMs);
    },
  };
}
