import type { Logger } from 'pino';
import type { BudgetObserver } from '../budget/budget.js';
import { METRICS, QUEUE_WAIT_BUCKETS_S } from '../core/names.js';
import type { CounterCell, Metrics } from './metrics.js';

/**
 * Provider budgets as metrics and log lines (SPEC §12): the wait histogram and the throttle
 * counter here; the available-points and concurrency-limit gauges are observed from the running
 * plan (gatehouse.ts), since they are state, not events.
 */
export function createBudgetObserver(metrics: Metrics, logger: Logger): BudgetObserver {
  const { meter } = metrics;
  const wait = meter.createHistogram(METRICS.budgetWait, {
    unit: 's',
    description: 'Time requests waited for their provider budget or a concurrency slot, by upstream and result (admitted, rejected, cancelled).',
    advice: { explicitBucketBoundaries: QUEUE_WAIT_BUCKETS_S },
  });
  const throttled = meter.createObservableCounter(METRICS.budgetThrottled, {
    description: 'Provider throttles (Shopify THROTTLED, 429), by upstream and outcome: retried (absorbed by gatehouse) or returned (the client got it).',
  });
  const cells = new Map<string, CounterCell & { readonly attributes: { upstream: string; outcome: string } }>();
  throttled.addCallback((result) => {
    for (const c of cells.values()) result.observe(c.value, c.attributes);
  });
  const cell = (upstream: string, outcome: string) => {
    const key = `${upstream}\n${outcome}`;
    let c = cells.get(key);
    if (c === undefined) {
      c = { value: 0, attributes: { upstream, outcome } };
      cells.set(key, c);
    }
    return c;
  };
  return {
    waited(upstream, seconds, result) {
      wait.record(seconds, { upstream, result });
    },
    throttled(upstream, outcome) {
      cell(upstream, outcome).value++;
    },
    storeState(store, state, reason) {
      if (state === 'fallback') logger.warn({ store, reason }, 'budget store unavailable: provider budgets are mirrored per process until it answers again');
      else logger.info({ store }, 'budget store answers again: provider budgets are shared through it again');
    },
  };
}

/** What the budget gauges read of the running plan's budgets. */
export interface BudgetGaugeSource {
  readonly upstream: string;
  available(): number | undefined;
  concurrencyLimit(): number | undefined;
}

/** `gatehouse_budget_available{upstream}` (the least any key has left) and `gatehouse_upstream_concurrency_limit{upstream}`. */
export function observeBudgets(metrics: Metrics, budgets: () => Iterable<BudgetGaugeSource>): void {
  metrics.meter
    .createObservableGauge(METRICS.budgetAvailable, { description: 'Points the provider budget mirror says are left, per upstream (the least of its keys).' })
    .addCallback((result) => {
      for (const b of budgets()) {
        const v = b.available();
        if (v !== undefined) result.observe(v, { upstream: b.upstream });
      }
    });
  metrics.meter
    .createObservableGauge(METRICS.upstreamConcurrencyLimit, { description: 'Requests allowed in flight to the upstream now (fixed or adaptive concurrency limit).' })
    .addCallback((result) => {
      for (const b of budgets()) {
        const v = b.concurrencyLimit();
        if (v !== undefined) result.observe(v, { upstream: b.upstream });
      }
    });
}
