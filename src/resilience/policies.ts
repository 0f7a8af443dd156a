import type { RouteConfig } from '../config/schema.js';
import type { Policy } from '../core/send.js';
import { circuitBreaker, type Breaker } from './breaker.js';
import { bulkhead, type Bulkhead } from './bulkhead.js';
import type { Clock } from '../core/clock.js';
import type { RetryLoad } from './retry-budget.js';
import { compileRetry, retry, type RetryObserver } from './retry.js';

/** What the route's policies need of its upstream's runtime state (shared by every route to it). */
export interface UpstreamResilience extends RetryLoad {
  readonly name: string;
  readonly breaker: Breaker | undefined;
  readonly bulkhead: Bulkhead | undefined;
}

export interface ResilienceDeps {
  readonly clock: Clock;
  readonly rand: () => number;
  readonly observer: RetryObserver;
}

/**
 * A route's resilience policies, outermost first: retry ⊃ circuit breaker ⊃ bulkhead (the
 * deadline wraps them all). Each retry is admitted by the breaker and the bulkhead on its own.
 * What is not configured adds no policy, so it costs nothing per request.
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
  if (upstream.breaker !== undefined) policies.push(circuitBreaker(upstream.breaker));
  if (upstream.bulkhead !== undefined) policies.push(bulkhead(upstream.bulkhead, upstream.name));
  return policies;
}
