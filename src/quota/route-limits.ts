import type { BucketResult, BucketShape } from '../core/bucket.js';
import type { QuotaStore, TakeOutcome } from './stores.js';

/**
 * One route's limits against their stores: tokens are taken from every limit at once (all or
 * nothing, store by store, the memory store first), handed back when a later store refuses, and
 * an outcome is read as "which limit refuses, and for how long".
 */

/** What this module needs of one of the route's limits. */
export interface Limit {
  readonly shape: BucketShape;
  readonly store: QuotaStore;
  /** `onExceed: queue`: a refusal waits in the queue rather than answering 429. */
  readonly queues: boolean;
}

/** The outcome for all of a route's limits: `buckets[i]` is undefined for a limit not checked. */
export interface RouteOutcome {
  readonly allowed: boolean;
  readonly buckets: readonly (BucketResult | undefined)[];
  readonly fallback: boolean;
}

/** Which limits refuse an outcome: a reject-limit wins; else the queue with the longest wait (-1: none). */
export interface Verdict {
  readonly waitMs: number;
  readonly rejectAt: number;
  readonly queueAt: number;
}

export interface RouteLimits {
  /** A token from every limit (keys[i] for limits[i]), or none of them. */
  takeAll(this: void, keys: readonly string[]): RouteOutcome | Promise<RouteOutcome>;
  /** Hands back the tokens a granted request took (its client left while it waited). */
  refundAll(this: void, keys: readonly string[]): void;
  verdict(this: void, outcome: RouteOutcome): Verdict;
}

interface Group {
  readonly store: QuotaStore;
  /** Positions in the route's limits. */
  readonly index: readonly number[];
  readonly shapes: readonly BucketShape[];
}

export function compileRouteLimits(limits: readonly Limit[]): RouteLimits {
  const n = limits.length;
  // One group per store, the memory one first: it answers at once and, when it refuses,
  // the request never costs a Redis round trip.
  const groups: Group[] = [];
  for (let i = 0; i < n; i++) {
    const store = limits[i]!.store;
    let g = groups.find((x) => x.store === store);
    if (g === undefined) {
      g = { store, index: [], shapes: [] };
      groups.push(g);
    }
    (g.index as number[]).push(i);
    (g.shapes as BucketShape[]).push(limits[i]!.shape);
  }
  groups.sort((a, b) => Number(a.store.mode() !== 'memory') - Number(b.store.mode() !== 'memory'));
  const single = groups.length === 1 ? groups[0]! : undefined;
  function takeAll(keys: readonly string[]): RouteOutcome | Promise<RouteOutcome> {
    return single !== undefined ? single.store.take(single.shapes, keys) : takeGroups(keys);
  }

  /** Store by store; when one refuses, the tokens the earlier ones gave are handed back. */
  async function takeGroups(keys: readonly string[]): Promise<RouteOutcome> {
    const buckets = new Array<BucketResult | undefined>(n);
    let fallback = false;
    for (let gi = 0; gi < groups.length; gi++) {
      const g = groups[gi]!;
      const outcome: TakeOutcome = await g.store.take(g.shapes, g.index.map((i) => keys[i]!));
      fallback ||= outcome.fallback;
      g.index.forEach((i, k) => (buckets[i] = outcome.buckets[k]));
      if (!outcome.allowed) {
        for (const t of groups.slice(0, gi)) {
          await t.store.refund(t.shapes, t.index.map((i) => keys[i]!));
          t.index.forEach((i) => (buckets[i] = refunded(buckets[i]!, limits[i]!.shape)));
        }
        return { allowed: false, buckets, fallback };
      }
    }
    return { allowed: true, buckets, fallback };
  }

  function refundAll(keys: readonly string[]): void {
    for (const g of groups) void Promise.resolve(g.store.refund(g.shapes, g.index.map((i) => keys[i]!))).catch(() => undefined);
  }

  function verdict(outcome: RouteOutcome): Verdict {
    let waitMs = 0;
    let rejectAt = -1;
    let queueAt = -1;
    for (let i = 0; i < n; i++) {
      const retry = outcome.buckets[i]?.retryAfterMs ?? 0;
      if (retry <= 0) continue;
      if (!limits[i]!.queues) {
        if (rejectAt < 0 || retry > waitMs) rejectAt = i;
      } else if (queueAt < 0 || retry > (outcome.buckets[queueAt]?.retryAfterMs ?? 0)) {
        queueAt = i;
      }
      waitMs = Math.max(waitMs, retry);
    }
    return { waitMs, rejectAt, queueAt };
  }

  return { takeAll, refundAll, verdict };
}

/** A bucket's result as it was before its token was handed back. */
const refunded = (r: BucketResult, shape: BucketShape): BucketResult => ({
  remaining: Math.min(shape.burst, r.remaining + 1),
  resetMs: Math.max(0, r.resetMs - shape.intervalMs),
  retryAfterMs: 0,
});
