import { SpanKind, SpanStatusCode, TraceFlags, type Link } from '@opentelemetry/api';
import type { AttemptResult } from '../webhook/delivery.js';
import type { IntakeResult } from '../webhook/intake.js';
import type { WebhookObserver } from '../webhook/runtime.js';
import type { AccessLog } from './access-log.js';
import { recordClient, type Metrics } from './metrics.js';
import { ATTR, METRICS } from './names.js';
import type { Tracing } from './tracing.js';

const RESULTS = ['verified', 'invalid', 'duplicate', 'delivered', 'retried', 'dead'] as const satisfies readonly (IntakeResult | Exclude<AttemptResult, 'released'>)[];

/**
 * Webhook visibility: `gatehouse_webhook_events_total{route,result}`, the delivery-lag histogram,
 * the pending-queue gauge, one CLIENT span per delivery attempt linked to the intake's SERVER
 * span, and one access-log line per attempt (the intake has the request's own line).
 */
export function createWebhookObserver(metrics: Metrics, tracing: Tracing | undefined, accessLog: AccessLog): WebhookObserver {
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
      // A route's first report (its worker started): every result's series exists from now on at
      // 0, so `increase(...{result="dead"}[15m]) > 0` sees the first dead letter after a start.
      if (!pending.has(route)) for (const result of RESULTS) metrics.webhookEvents.add(0, { route, result });
      pending.set(route, count);
    },

    attempt(ev, upstream, ep, path) {
      const attempt = ev.attempts;
      const links: Link[] = [];
      const intake = parseTraceparent(ev.trace);
      if (intake !== undefined) links.push({ context: intake, attributes: { 'gatehouse.link': 'webhook.intake' } });
      const span = tracing?.tracer.startSpan(ev.method, {
        kind: SpanKind.CLIENT,
        root: true,
        links,
        attributes: {
          [ATTR.method]: ev.method,
          [ATTR.urlPath]: path,
          [ATTR.urlScheme]: ep.scheme,
          [ATTR.serverAddress]: ep.hostname,
          [ATTR.serverPort]: ep.port,
          [ATTR.gatehouseRoute]: ev.route,
          [ATTR.gatehouseUpstream]: upstream,
          [ATTR.resendCount]: attempt > 1 ? attempt - 1 : undefined,
          [ATTR.webhookId]: ev.id,
          [ATTR.webhookEventId]: ev.eventId,
          [ATTR.webhookAttempt]: attempt,
        },
      });
      // in the configured propagation formats (OTEL_PROPAGATORS), as proxied requests
      const traceHeaders: string[] = [];
      if (span !== undefined) tracing!.inject(span, traceHeaders);
      return {
        traceHeaders,
        end(report) {
          const failure = report.error === undefined ? undefined : report.status !== 0 ? String(report.status) : 'delivery';
          recordClient(metrics, report.durationMs / 1000, upstream, ev.route, ep, ev.method, report.status, failure);
          if (report.result !== 'released') metrics.webhookEvents.add(1, { route: ev.route, result: report.result });
          if (report.lagMs !== undefined) metrics.webhookDeliveryLag.record(Math.max(0, report.lagMs) / 1000, { route: ev.route });
          if (span !== undefined) {
            if (report.status !== 0) span.setAttribute(ATTR.status, report.status);
            span.setAttribute(ATTR.webhookResult, report.result);
            if (report.error !== undefined) {
              span.setAttribute(ATTR.errorType, report.status !== 0 ? String(report.status) : 'delivery');
              span.setStatus({ code: SpanStatusCode.ERROR, message: report.error });
            }
            span.end();
          }
          // the access log's shape (SPEC §8): every key, null where it does not apply, a code in `error`
          accessLog({
            route: ev.route,
            method: ev.method,
            path,
            status: report.status === 0 ? null : report.status,
            durationMs: Math.round(report.durationMs * 1000) / 1000,
            upstream,
            attempts: attempt,
            retrySkipped: null,
            traceId: span?.spanContext().traceId ?? null,
            requestId: ev.requestId,
            error: report.code ?? null,
            client: null,
            kind: 'webhook-delivery',
            webhookId: ev.id,
            eventId: ev.eventId,
            result: report.result,
          });
        },
      };
    },
  };
}

function parseTraceparent(tp: string | undefined) {
  const m = tp === undefined ? null : /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp);
  if (m === null) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) as TraceFlags, isRemote: true };
}

const traceparentOf = (c: { traceId: string; spanId: string; traceFlags: number }) =>
  `00-${c.traceId}-${c.spanId}-${c.traceFlags.toString(16).padStart(2, '0')}`;
