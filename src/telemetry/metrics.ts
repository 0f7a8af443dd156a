import type { Counter, Histogram, Meter } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import type { Resource } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import type { TelemetryConfig } from '../config/schema.js';
import { DURATION_BUCKETS_S, LAG_BUCKETS_S, METRICS } from './names.js';

export interface Metrics {
  readonly meter: Meter;
  readonly serverDuration: Histogram;
  readonly clientDuration: Histogram;
  readonly configReloads: Counter;
  /** `gatehouse_retries_total{route,reason}`: retries made, by what caused them. */
  readonly retries: Counter;
  /** JWT outcomes by route and result (allowed, missing, invalid, expired, forbidden, unavailable). */
  readonly authDecisions: Counter;
  /** `gatehouse_webhook_events_total{route,result}`. */
  readonly webhookEvents: Counter;
  /** Time from a webhook's receipt to its delivery to the upstream. */
  readonly webhookDeliveryLag: Histogram;
  /** Prometheus text exposition; undefined when `metrics.prometheus: false`. */
  readonly prometheus: (() => Promise<string>) | undefined;
  shutdown(): Promise<void>;
}

/** OTel metrics, read as Prometheus text at the admin /metrics and pushed by OTLP when configured. */
export function createMetrics(cfg: TelemetryConfig, resource: Resource): Metrics {
  const readers: IMetricReader[] = [];
  const prometheus = cfg.metrics.prometheus ? new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true }) : undefined;
  if (prometheus) readers.push(prometheus);
  if (cfg.metrics.otlp) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: cfg.metrics.otlp.endpoint }),
        exportIntervalMillis: cfg.metrics.otlp.interval,
      }),
    );
  }
  const provider = new MeterProvider({ resource, readers });
  const meter = provider.getMeter('gatehouse');
  const configReloads = meter.createCounter(METRICS.configReloads, { description: 'Config reloads by result (success, failure).' });
  // Both series exist from the start, so `increase(...{result="failure"}[5m])` alerts work before the first failure.
  configReloads.add(0, { result: 'success' });
  configReloads.add(0, { result: 'failure' });
  return {
    meter,
    serverDuration: meter.createHistogram(METRICS.serverDuration, {
      unit: 's',
      description: 'Duration of requests gatehouse served, by route and status.',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS_S },
    }),
    clientDuration: meter.createHistogram(METRICS.clientDuration, {
      unit: 's',
      description: 'Duration of each upstream attempt, by upstream and status.',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS_S },
    }),
    configReloads,
    retries: meter.createCounter(METRICS.retries, { description: 'Retries made, by route and reason (status code or failure kind).' }),
    authDecisions: meter.createCounter(METRICS.authDecisions, { description: 'JWT decisions by route and result.' }),
    webhookEvents: meter.createCounter(METRICS.webhookEvents, {
      description: 'Webhook events by route and result (verified, invalid, duplicate, delivered, retried, dead).',
    }),
    webhookDeliveryLag: meter.createHistogram(METRICS.webhookDeliveryLag, {
      unit: 's',
      description: 'Time from receiving a webhook to its delivery to the upstream, retries included.',
      advice: { explicitBucketBoundaries: LAG_BUCKETS_S },
    }),
    prometheus: prometheus === undefined ? undefined : () => prometheusText(prometheus),
    shutdown: () => provider.shutdown(),
  };
}

const serializer = new PrometheusSerializer('', false, undefined, false, true);

/**
 * The exporter's text with the unit suffix the OTel-to-Prometheus rules ask for and this exporter
 * version leaves out: `http.server.request.duration` (unit s) -> `http_server_request_duration_seconds`.
 */
async function prometheusText(exporter: PrometheusExporter): Promise<string> {
  const { resourceMetrics } = await exporter.collect();
  return serializer.serialize({
    ...resourceMetrics,
    scopeMetrics: resourceMetrics.scopeMetrics.map((scope) => ({
      ...scope,
      metrics: scope.metrics.map((m) =>
        m.descriptor.unit === 's' && !m.descriptor.name.endsWith('_seconds')
          ? { ...m, descriptor: { ...m.descriptor, name: `${m.descriptor.name}_seconds` } }
          : m,
      ),
    })),
  });
}
