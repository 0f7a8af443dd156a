import type { OutboxObserver } from '../delivery/outbox.js';
import type { AttemptResult } from '../delivery/worker.js';
import type { AccessLog } from './access-log.js';
import type { Metrics } from './metrics.js';
import { METRICS } from '../core/names.js';
import { traceparentOf } from './webhook-observer.js';

const RESULTS = ['accepted', 'delivered', 'retried', 'dead'] as const satisfies readonly ('accepted' | Exclude<AttemptResult, 'released'>)[];

/**
 * Outbox visibility (SPEC §11): `gatehouse_outbox_messages{route,status}` (pending and dead now),
 * `gatehouse_outbox_deliveries_total{route,result}`, `gatehouse_outbox_lag_seconds`, and one
 * access-log line per try. Each try's CLIENT span, linked to the accepting request's SERVER span,
 * and its client-duration metric come from the upstream dispatch, as for proxied requests.
 */
export function createOutboxObserver(metrics: Metrics, accessLog: AccessLog): OutboxObserver {
  const counts = new Map<string, { pending: number; dead: number }>();
  metrics.meter
    .createObservableGauge(METRICS.outboxMessages, { description: 'Outbox messages now, by route and status (pending: not yet delivered; dead: given up, waiting for replay).' })
    .addCallback((result) => {
      for (const [route, c] of counts) {
        result.observe(c.pending, { route, status: 'pending' });
        result.observe(c.dead, { route, status: 'dead' });
      }
    });

  return {
    accepted(route) {
      metrics.outboxDeliveries.add(1, { route, result: 'accepted' });
    },

    traceparent(ex) {
      const ctx = ex.span?.spanContext();
      return ctx === undefined ? undefined : traceparentOf(ctx);
    },

    counted(route, destination, pending, dead) {
      if (destination !== 'upstream') return;
      // every result's series exists from a route's first report on, so increase() sees the first one
      if (!counts.has(route)) for (const result of RESULTS) metrics.outboxDeliveries.add(0, { route, result });
      counts.set(route, { pending, dead: dead ?? counts.get(route)?.dead ?? 0 });
    },

    attempted(d, report) {
      const callback = d.destination !== 'upstream';
      if (!callback && report.result !== 'released') metrics.outboxDeliveries.add(1, { route: d.route, result: report.result });
      if (!callback && report.lagMs !== undefined) metrics.outboxLag.record(Math.max(0, report.lagMs) / 1000, { route: d.route });
      accessLog({
        route: d.route,
        method: callback ? 'POST' : d.method,
        path: report.path,
        status: report.status === 0 ? null : report.status,
        durationMs: Math.round(report.durationMs * 1000) / 1000,
        upstream: report.upstream || null,
        attempts: d.attempts,
        retrySkipped: null,
        traceId: report.traceId || null,
        requestId: d.requestId,
        error: report.code ?? null,
        client: null,
        kind: callback ? 'outbox-callback' : 'outbox-delivery',
        outboxId: d.id,
        result: report.result,
      });
    },
  };
}
