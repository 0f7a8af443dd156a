import type { Counter, Histogram, Meter } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import type { Resource } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import type { TelemetryConfig } from '../config/schema.js';
import { createKeyedHistogram, histogramProducer, type KeyedHistogram } from './histogram.js';
import { ATTR, DURATION_BUCKETS_S, LAG_BUCKETS_S, METRICS } from './names.js';

const SERVER_ATTRIBUTES = ['route', ATTR.method, ATTR.status, ATTR.errorType] as const;
const CLIENT_ATTRIBUTES = ['upstream', 'route', ATTR.method, ATTR.status, ATTR.errorType] as const;

export interface Metrics {
  readonly meter: Meter;
  /** Recorded once per request: keyed histograms, see histogram.ts. */
  readonly serverDuration: KeyedHistogram<(typeof SERVER_ATTRIBUTES)[number]>;
  readonly clientDuration: KeyedHistogram<(typeof CLIENT_ATTRIBUTES)[number]>;
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
export function createMetrics(
  cfg: TelemetryConfig,
  resource: Resource,
  wallClockMs: () => number = () => performance.timeOrigin + performance.now(),
): Metrics {
  const serverDuration = createKeyedHistogram(
    {
      name: METRICS.serverDuration,
      unit: 's',
      description: 'Duration of requests gatehouse served, by route and status.',
      boundaries: DURATION_BUCKETS_S,
      attributeNames: SERVER_ATTRIBUTES,
    },
    wallClockMs,
  );
  const clientDuration = createKeyedHistogram(
    {
      name: METRICS.clientDuration,
      unit: 's',
      description: 'Duration of each upstream attempt, by upstream and status.',
      boundaries: DURATION_BUCKETS_S,
      attributeNames: CLIENT_ATTRIBUTES,
    },
    wallClockMs,
  );
  const metricProducers = [histogramProducer('gatehouse', [serverDuration, clientDuration], wallClockMs)];
  const readers: IMetricReader[] = [];
  const prometheus = cfg.metrics.prometheus ? new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, metricProducers }) : undefined;
  if (prometheus) readers.push(prometheus);
  if (cfg.metrics.otlp) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: cfg.metrics.otlp.endpoint }),
        exportIntervalMillis: cfg.metrics.otlp.interval,
        metricProducers,
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
    serverDuration,
    clientDuration,
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
