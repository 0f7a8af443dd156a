import type { Logger } from 'pino';
import type { DecisionResult, QuotaObserver } from '../quota/quota.js';
import type { CounterCell, Metrics } from './metrics.js';

/**
 * Quota decisions, queues and store transitions as metrics and log lines. A route's decision
 * counters are looked up once, at compile time: recording a decision is one increment.
 */
export function createQuotaObserver(metrics: Metrics, logger: Logger): QuotaObserver {
  return {
    route(route) {
      const cells: Record<DecisionResult, CounterCell> = {
        allowed: metrics.ratelimitDecisions({ route, result: 'allowed' }),
        rejected: metrics.ratelimitDecisions({ route, result: 'rejected' }),
        queued: metrics.ratelimitDecisions({ route, result: 'queued' }),
        fallback: metrics.ratelimitDecisions({ route, result: 'fallback' }),
      };
      return { decision: (result) => void cells[result].value++ };
    },
    queueDepth(quota, delta) {
      metrics.ratelimitQueueDepth.add(delta, { quota });
    },
    waited(quota, seconds, result) {
      metrics.ratelimitQueueWait.record(seconds, { quota, result });
    },
    storeState(store, state, reason) {
      if (state === 'fallback') {
        logger.warn({ store, reason }, 'quota store unavailable: quotas use per-process limits until it answers again');
      } else {
        logger.info({ store }, 'quota store answers again: quotas are shared through it again');
      }
    },
    upstreamPaused(upstream, pauseMs, source) {
      logger.warn({ upstream, pauseMs, source }, 'upstream announced a rate limit: new requests to it wait for the reset');
    },
  };
}
