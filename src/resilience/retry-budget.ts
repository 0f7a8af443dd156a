/**
 * Envoy's retry budget: retries in flight to an upstream may be at most `budget` times the
 * requests in flight to it, but never fewer than a small minimum concurrency, so a quiet upstream
 * can still be retried while a failing one under load is not hit by a retry storm.
 *
 * "Requests" are first tries: counting the retries themselves in the denominator would let them
 * grow their own budget (at 20% they would add 25% to the load, measured). A retry holds its
 * slot from the decision through its back-off wait until its attempt ends, so with retries that
 * last at least as long as first tries, retries add at most `budget` to the upstream's load.
 */

/** Envoy's `min_retry_concurrency` default. */
export const MIN_RETRY_CONCURRENCY = 3;

/** The counters a budget is kept on: one per upstream, shared by every route to it. */
export interface RetryLoad {
  /** Attempts in flight to the upstream, retries included. */
  readonly inFlight: number;
  /** Of those, retries (second and later tries). */
  readonly retryAttemptsInFlight: number;
  /** Retries granted and not finished yet: waiting out their back-off, or in flight. */
  retriesInFlight: number;
}

/** Whether one more retry fits: `retriesInFlight < max(3, budget * requestsInFlight)`. */
export function retryBudgetAllows(retriesInFlight: number, requestsInFlight: number, budget: number, minConcurrency = MIN_RETRY_CONCURRENCY): boolean {
  return retriesInFlight < Math.max(minConcurrency, budget * requestsInFlight);
}
