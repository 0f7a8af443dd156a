import type { Attributes } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { DecisionResult, QuotaObserver } from '../quota/quota.js';
import type { Metrics } from './metrics.js';

/**
 * Quota decisions, queues and store transitions as metrics and log lines. Attribute objects are
 * built once per route and result, so recording a decision allocates nothing.
 */
export function createQuotaObserver(metrics: Metrics, logger: Logger): QuotaObserver {
  return {
    route(route) {
      const attrs: Record<DecisionResult, Attributes> = {
        allowed: { route, result: 'allowed' },
        rejected: { route, result: 'rejected' },
        queued: { route, result: 'queued' },
        fallback: { route, result: 'fallback' },
      };
      return { decision: (result) => metrics.ratelimitDecisions.add(1, attrs[result]) };
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
