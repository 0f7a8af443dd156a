import type { Meter } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Exchange } from '../core/exchange.js';
import type { BreakerObserver, BreakerStateName } from '../resilience/breaker.js';
import type { EndpointChange, HealthObserver } from '../resilience/health.js';
import type { RetryObserver, RetrySkip } from '../resilience/retry.js';
import type { HedgeObserver } from '../resilience/hedge.js';
import { requestFields } from './log.js';
import type { Metrics } from './metrics.js';
import { ATTR, EVENTS, METRICS } from '../core/names.js';

/** `gatehouse_circuit_state`: 0 closed, 1 half-open, 2 open. */
const STATE_CODE: Readonly<Record<BreakerStateName, number>> = { closed: 0, 'half-open': 1, open: 2 };

export type ResilienceObserver = RetryObserver & BreakerObserver & HealthObserver & HedgeObserver;

/** Retries, breaker transitions and endpoint health as metrics, span events and log lines. */
export function createResilienceObserver(metrics: Metrics, logger: Logger): ResilienceObserver {
  return {
    retry(ex: Exchange, reason: string, delayMs: number) {
      metrics.retries.add(1, { route: ex.route?.name ?? '', reason });
      ex.event(EVENTS.retry, { reason, 'gatehouse.retry.delay_ms': Math.round(delayMs), 'gatehouse.attempt': ex.attempts + 1 });
    },
    retrySkipped(ex: Exchange, reason: string, why: RetrySkip) {
      // `reason` here is what the retry would have been for; the metric's reason is why it was not made
      metrics.retriesSkipped.add(1, { route: ex.route?.name ?? '', reason: why });
      ex.retrySkipped = why;
      ex.event(EVENTS.retrySkipped, { reason, 'gatehouse.retry.skipped_because': why });
    },
    hedge(ex: Exchange, result: 'won' | 'lost') {
      metrics.hedges({ route: ex.route?.name ?? '', result }).value++;
      ex.event(EVENTS.hedge, { [ATTR.hedgeResult]: result });
    },
    breakerTransition(upstream: string, from: BreakerStateName, to: BreakerStateName, ex: Exchange | undefined, detail: string) {
      ex?.event(EVENTS.breakerTransition, { 'gatehouse.upstream': upstream, 'gatehouse.circuit.from': from, 'gatehouse.circuit.to': to });
      // written during the request whose answer caused it: its trace ids come along
      const line = { ...(ex === undefined ? undefined : requestFields(ex)), upstream, from, to, detail };
      if (to === 'open') logger.warn(line, 'circuit breaker opened');
      else logger.info(line, `circuit breaker ${to}`);
    },
    endpointChange(upstream: string, endpoint: string, change: EndpointChange, ex: Exchange | undefined, detail: string) {
      if (change === 'ejected') ex?.event(EVENTS.endpointEjected, { 'gatehouse.upstream': upstream, 'gatehouse.endpoint': endpoint });
      const line = { ...(ex === undefined ? undefined : requestFields(ex)), upstream, endpoint, change, detail };
      if (change === 'ejected' || change === 'unhealthy') logger.warn(line, `endpoint ${change}`);
      else logger.info(line, `endpoint ${change}`);
    },
  };
}

/** What the gauges read: the upstreams of the running plan. */
export interface UpstreamGaugeSource {
  readonly name: string;
  view(): {
    readonly breaker: { readonly state: BreakerStateName } | null;
    readonly endpoints: readonly { readonly url: string; readonly healthy: boolean; readonly ejected: boolean }[];
  };
}

/**
 * `gatehouse_circuit_state{upstream}` (0 closed, 1 half-open, 2 open; upstreams with a breaker)
 * and `gatehouse_upstream_healthy{upstream,endpoint}` (1 = in rotation: passes its health checks
 * and is not ejected), read from the running plan at each collection.
 */
export function observeUpstreams(meter: Meter, upstreams: () => Iterable<UpstreamGaugeSource>): void {
  meter
    .createObservableGauge(METRICS.circuitState, { description: 'Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.' })
    .addCallback((result) => {
      for (const u of upstreams()) {
        const breaker = u.view().breaker;
        if (breaker !== null) result.observe(STATE_CODE[breaker.state], { upstream: u.name });
      }
    });
  meter
    .createObservableGauge(METRICS.upstreamHealthy, { description: 'Whether each upstream endpoint is in rotation (1) or not (0).' })
    .addCallback((result) => {
      for (const u of upstreams()) {
        for (const e of u.view().endpoints) result.observe(e.healthy && !e.ejected ? 1 : 0, { upstream: u.name, endpoint: e.url });
      }
    });
}
