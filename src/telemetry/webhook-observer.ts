import type { WebhookObserver } from '../webhook/runtime.js';
import type { AccessLog } from './access-log.js';
import type { Metrics } from './metrics.js';
import { METRICS } from '../core/names.js';

/**
 * Webhook visibility: `gatehouse_webhook_events_total{route,result}`, the delivery-lag histogram,
 * the pending-queue gauge, one CLIENT span per delivery attempt linked to the intake's SERVER
 * span, and one access-log line per attempt (the intake has the request's own line).
 */
export function createWebhookObserver(metrics: Metrics, accessLog: AccessLog): WebhookObserver {
  const pending = new Map<string, number>();
  metrics.meter
    .createObservableGauge(METRICS.webhookPending, { description: 'Webhook events stored and not yet delivered (or dead), by route.' })
    .addCallback((result) => {
      for (const [route, n] of pending) result.observe(n, { route });
    });

  return {
    intake(route, result) {
      metrics.webhookEvents.add(1, { route, result });
    },

    traceparent(ex) {
      const ctx = ex.span?.spanContext();
      return ctx === undefined ? undefined : traceparentOf(ctx);
    },

    pending(route, count) {
      pending.set(route, count);
    },

    attempted(ev, report) {
      if (report.result !== 'released') metrics.webhookEvents.add(1, { route: ev.route, result: report.result });
      if (report.lagMs !== undefined) metrics.webhookDeliveryLag.record(Math.max(0, report.lagMs) / 1000, { route: ev.route });
      accessLog({
        route: ev.route,
        method: ev.method,
        path: report.path,
        status: report.status,
        durationMs: Math.round(report.durationMs * 1000) / 1000,
        upstream: report.upstream,
        attempts: ev.attempts,
        traceId: report.traceId || null,
        requestId: ev.requestId,
        error: report.error ?? null,
        client: '',
        kind: 'webhook-delivery',
        webhookId: ev.id,
        eventId: ev.eventId,
        result: report.result,
      });
    },
  };
}

const traceparentOf = (c: { traceId: string; spanId: string; traceFlags: number }) =>
  `00-${c.traceId}-${c.spanId}-${c.traceFlags.toString(16).padStart(2, '0')}`;
