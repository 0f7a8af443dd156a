import type { HedgeConfig } from '../config/schema.js';
import type { Exchange } from '../core/exchange.js';
import { retryBudgetAllows, type RetryLoad } from './retry-budget.js';

/*
 * Hedged requests (SPEC §13): when a try of an idempotent request has no response headers after
 * `after`, another try goes out (to the next endpoint of the balancer, or the same when there is
 * only one); the first answer wins and the others are aborted. The decision is here, pure; the
 * upstream dispatch owns the timer and the arbitration between the tries (proxy/dispatch.ts).
 * A hedge is a retry made early: it needs a replayable request, it takes a slot of the retry
 * budget while it runs, and it is a try of its own (its own CLIENT span).
 */

export interface HedgePlan {
  readonly afterMs: number;
  /** Hedges per request at most (the first try not counted). */
  readonly max: number;
  /** The route's retry budget (`retry.budget`, default 0.2). */
  readonly budget: number;
}

export function compileHedge(cfg: HedgeConfig, retryBudget: number | undefined): HedgePlan {
  return { afterMs: cfg.after, max: cfg.max, budget: retryBudget ?? 0.2 };
}

export type HedgeSkip = 'max' | 'budget';
export type HedgeDecision = { readonly hedge: true } | { readonly hedge: false; readonly reason: HedgeSkip };

const HEDGE: HedgeDecision = { hedge: true };
const SKIP: { readonly [K in HedgeSkip]: HedgeDecision } = { max: { hedge: false, reason: 'max' }, budget: { hedge: false, reason: 'budget' } };

/** Whether another try goes out now: `sent` hedges so far, the upstream's retry counters. */
export function decideHedge(plan: HedgePlan, sent: number, retriesInFlight: number, requestsInFlight: number): HedgeDecision {
  if (sent >= plan.max) return SKIP.max;
  if (!retryBudgetAllows(retriesInFlight, requestsInFlight, plan.budget)) return SKIP.budget;
  return HEDGE;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** Idempotent, and its body (if any) kept whole, so a second try can send it again. */
export function isHedgeable(ex: Exchange): boolean {
  return IDEMPOTENT.has(ex.method) && (ex.body === null || Buffer.isBuffer(ex.body)) && ex.upgrade === undefined;
}

/** Told how each hedge ended; telemetry implements it. */
export interface HedgeObserver {
  /** won: the hedge answered first; lost: another try did, or it failed. */
  hedge(ex: Exchange, result: 'won' | 'lost'): void;
}

/** What the dispatch needs to hedge a route's tries. */
export interface Hedging {
  readonly plan: HedgePlan;
  readonly load: RetryLoad;
  readonly observer: HedgeObserver;
}
