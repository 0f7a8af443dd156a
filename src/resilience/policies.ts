import type { RouteConfig } from '../config/schema.js';
import type { Policy } from '../core/send.js';
import type { Clock } from '../core/clock.js';
import type { RetryLoad } from './retry-budget.js';
import { compileRetry, retry, type RetryObserver } from './retry.js';

/** What the route's policies need of its upstream's runtime state (shared by every route to it). */
export interface UpstreamResilience extends RetryLoad {
  readonly name: string;
}

export interface ResilienceDeps {
  readonly clock: Clock;
  readonly rand: () => number;
  readonly observer: RetryObserver;
}

/**
 * A route's resilience policies (the deadline wraps them): retry. The upstream's breaker and
 * bulkhead admit each attempt inside the upstream dispatch, so every retry is admitted on its
 * own, and deliveries are admitted the same way. What is not configured adds no policy, so it
 * costs nothing per request.
 */
export function compileResilience(route: RouteConfig, upstream: UpstreamResilience, deps: ResilienceDeps): Policy[] {
  const policies: Policy[] = [];
  if (route.retry !== undefined) {
    const p = retry(compileRetry(route.retry), {
      clock: deps.clock,
      rand: deps.rand,
      observer: deps.observer,
      load: upstream,
      generatesIdempotencyKey: route.idempotencyKey === 'generate',
    });
    if (p !== undefined) policies.push(p);
  }
  return policies;
}
