import type { AttemptResult } from '../delivery/worker.js';
import type { IntakeResult } from '../webhook/intake.js';
import type { WebhookObserver } from '../webhook/runtime.js';
import type { AccessLog } from './access-log.js';
import type { Metrics } from './metrics.js';
import { METRICS } from '../core/names.js';

const RESULTS = ['verified', 'invalid', 'duplicate', 'filtered', 'delivered', 'retried', 'dead'] as const satisfies readonly (IntakeResult | Exclude<AttemptResult, 'released'>)[];

const DELIVERY_RESULTS = ['delivered', 'retried', 'dead'] as const satisfies readonly Exclude<AttemptResult, 'released'>[];

/**
 * Webhook visibility: `gatehouse_webhook_events_total{route,result}`, the delivery-lag histogram,
 * the pending-queue gauge, and one access-log line per delivery attempt (the intake has the
 * request's own line). Each attempt's CLIENT span, linked to the intake's SERVER span, and its
 * client-duration metric come from the upstream dispatch, as for proxied requests.
 */
export function createWebhookObserver(metrics: Metrics, accessLog: AccessLog): WebhookObserver {
  /** Unfinished deliveries by route, then destination: the gauge is their sum per route. */
  const pending = new Map<string, Map<string, number>>();
  metrics.meter
    .createObservableGauge(METRICS.webhookPending, { description: 'Webhook deliveries stored and not yet delivered (or dead), by route (all its destinations).' })
    .addCallback((result) => {
      for (const [route, byDestination] of pending) {
        let n = 0;
        for (const v of byDestination.values()) n += v;
        result.observe(n, { route });
      }
    });

  return {
    intake(route, result) {
      metrics.webhookEvents.add(1, { route, result });
    },

    traceparent(ex) {
      const ctx = ex.span?.spanContext();
      return ctx === undefined ? undefined : traceparentOf(ctx);
    },

    counted(route, destination, count) {
      // A route's first report (its worker started): every result's series exists from now on at
      // 0, so `increase(...{result="dead"}[15m]) > 0` sees the first dead letter after a start.
      let byDestination = pending.get(route);
      if (byDestination === undefined) {
        for (const result of RESULTS) metrics.webhookEvents.add(0, { route, result });
        pending.set(route, (byDestination = new Map<string, number>()));
      }
      if (!byDestination.has(destination)) for (const result of DELIVERY_RESULTS) metrics.webhookDeliveries.add(0, { route, destination, result });
      byDestination.set(destination, count);
    },

    reconciled(route, report) {
      metrics.webhookReconciled.add(report.reconciled, { route });
    },

    attempted(ev, report) {
      if (report.result !== 'released') {
        metrics.webhookEvents.add(1, { route: ev.route, result: report.result });
        metrics.webhookDeliveries.add(1, { route: ev.route, destination: ev.destination, result: report.result });
      }
      if (report.lagMs !== undefined) metrics.webhookDeliveryLag.record(Math.max(0, report.lagMs) / 1000, { route: ev.route });
      // the access log's shape (SPEC §8): every key, null where it does not apply, a code in `error`
      accessLog({
        route: ev.route,
        method: ev.method,
        path: report.path,
        status: report.status === 0 ? null : report.status,
        durationMs: Math.round(report.durationMs * 1000) / 1000,
        upstream: report.upstream,
        attempts: ev.attempts,
        retrySkipped: null,
        traceId: report.traceId || null,
        requestId: ev.requestId,
        error: report.code ?? null,
        client: null,
        kind: 'webhook-delivery',
        webhookId: ev.id,
        eventId: ev.eventId,
        destination: ev.destination,
        result: report.result,
      });
    },
  };
}

export const traceparentOf = (c: { traceId: string; spanId: string; traceFlags: number }) =>
  `00-${c.traceId}-${c.spanId}-${c.traceFlags.toString(16).padStart(2, '0')}`;
