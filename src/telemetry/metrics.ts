import type { Attributes, AttributeValue, Counter, Histogram, Meter, UpDownCounter } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import type { Resource } from '@opentelemetry/resources';
import { DataPointType, MeterProvider, PeriodicExportingMetricReader, type IMetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import type { RouteInfo } from '../core/exchange.js';
import { createMetricExporter } from './exporters.js';
import { createKeyedHistogram, histogramProducer, type KeyedHistogram } from './histogram.js';
import { ATTR, DURATION_BUCKETS_S, LAG_BUCKETS_S, METRICS, QUEUE_WAIT_BUCKETS_S } from '../core/names.js';
import { startRuntimeMetrics } from './runtime-metrics.js';
import type { MetricSettings } from './otel-env.js';

/**
 * The duration histograms' attributes (SPEC §8): the HTTP semconv names, plus gatehouse's own
 * where the semconv has none. A route's name comes first: it decides `http.route` (one value per
 * name, so that level of the histogram's tree is a one-entry Map).
 */
const SERVER_ATTRIBUTES = [ATTR.gatehouseRoute, ATTR.route, ATTR.method, ATTR.status, ATTR.errorType] as const;
const CLIENT_ATTRIBUTES = [ATTR.gatehouseUpstream, ATTR.gatehouseRoute, ATTR.serverAddress, ATTR.serverPort, ATTR.method, ATTR.status, ATTR.errorType] as const;

export interface Metrics {
  readonly meter: Meter;
  /** Recorded once per request: keyed histograms, see histogram.ts. Record through recordServer/recordClient. */
  readonly serverDuration: KeyedHistogram<(typeof SERVER_ATTRIBUTES)[number]>;
  readonly clientDuration: KeyedHistogram<(typeof CLIENT_ATTRIBUTES)[number]>;
  readonly configReloads: Counter;
  /** `gatehouse_retries_total{route,reason}`: retries made, by what caused them. */
  readonly retries: Counter;
  /** `gatehouse_retries_skipped_total{route,reason}`: retries wanted but not made; reason budget or deadline. */
  readonly retriesSkipped: Counter;
  /** JWT outcomes by route and result (allowed, missing, invalid, expired, forbidden, unavailable). */
  readonly authDecisions: CounterCells;
  /** `gatehouse_webhook_events_total{route,result}`. */
  readonly webhookEvents: Counter;
  /** Time from a webhook's receipt to its delivery to the upstream. */
  readonly webhookDeliveryLag: Histogram;
  readonly webhookDeliveries: Counter;
  readonly webhookReconciled: Counter;
  /** `gatehouse_outbox_deliveries_total{route,result}`: accepted, delivered, retried, dead. */
  readonly outboxDeliveries: Counter;
  /** `gatehouse_outbox_lag_seconds`: from acceptance to delivery. */
  readonly outboxLag: Histogram;
  /** `gatehouse_ratelimit_decisions_total{route,result}`: allowed, rejected, queued, fallback. */
  readonly ratelimitDecisions: CounterCells;
  /** `gatehouse_ratelimit_queue_depth{quota}`: requests waiting in a quota's queue. */
  readonly ratelimitQueueDepth: UpDownCounter;
  /** `gatehouse_ratelimit_queue_wait_seconds{quota,result}`: time spent in a quota's queue. */
  readonly ratelimitQueueWait: Histogram;
  /** `gatehouse_tls_handshake_failures_total{listener,reason}`: refused or unfinished TLS handshakes. */
  readonly tlsHandshakeFailures: CounterCells;
  /** `gatehouse_cache_requests_total{route,result}`: hit, miss, stale, revalidated, bypass. */
  readonly cacheRequests: CounterCells;
  /** `gatehouse_coalesced_requests_total{route}`: requests answered with an identical request's answer. */
  readonly coalescedRequests: CounterCells;
  /** `gatehouse_hedges_total{route,result}`: hedged tries, won or lost. */
  readonly hedges: CounterCells;
  /** Prometheus text exposition; undefined when `metrics.prometheus: false`. */
  readonly prometheus: (() => Promise<string>) | undefined;
  shutdown(): Promise<void>;
}

/**
 * OTel metrics, read as Prometheus text at the admin /metrics and pushed by OTLP when configured.
 * Build inside `withOtelEnv`: the OTLP exporter reads its OTEL_EXPORTER_OTLP_* variables.
 */
export function createMetrics(
  cfg: MetricSettings,
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
  const prometheus = cfg.prometheus ? new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, metricProducers }) : undefined;
  if (prometheus) readers.push(prometheus);
  if (cfg.otlp) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: createMetricExporter(cfg.otlp),
        exportIntervalMillis: cfg.otlp.intervalMs,
        metricProducers,
      }),
    );
  }
  const provider = new MeterProvider({ resource, readers });
  const meter = provider.getMeter('gatehouse');
  const runtime = readers.length > 0 ? startRuntimeMetrics(provider, meter) : undefined;
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
    retriesSkipped: meter.createCounter(METRICS.retriesSkipped, {
      description: 'Retryable answers or failures passed on without a retry, by route and reason (budget: the retry budget was spent; deadline: the wait would end past the route timeout).',
    }),
    authDecisions: createCounterCells(meter, METRICS.authDecisions, 'JWT decisions by route and result.'),
    webhookEvents: meter.createCounter(METRICS.webhookEvents, {
      description: 'Webhook events by route and result (verified, invalid, duplicate, filtered, delivered, retried, dead).',
    }),
    webhookDeliveries: meter.createCounter(METRICS.webhookDeliveries, {
      description: 'Webhook delivery tries by route, destination and result (delivered, retried, dead).',
    }),
    webhookReconciled: meter.createCounter(METRICS.webhookReconciled, {
      description: 'Webhook events found by reconciliation (listed by the provider, never received) and fed to delivery, by route.',
    }),
    webhookDeliveryLag: meter.createHistogram(METRICS.webhookDeliveryLag, {
      unit: 's',
      description: 'Time from receiving a webhook to its delivery to the upstream, retries included.',
      advice: { explicitBucketBoundaries: LAG_BUCKETS_S },
    }),
    outboxDeliveries: meter.createCounter(METRICS.outboxDeliveries, {
      description: 'Outbox messages by route and result: accepted (stored, 202), delivered, retried (a try failed, another follows), dead.',
    }),
    outboxLag: meter.createHistogram(METRICS.outboxLag, {
      unit: 's',
      description: 'Time from accepting an outbox message (the 202) to its delivery to the upstream, retries included.',
      advice: { explicitBucketBoundaries: LAG_BUCKETS_S },
    }),
    ratelimitDecisions: createCounterCells(meter, METRICS.ratelimitDecisions, 'Quota decisions by route and result (allowed, rejected, queued, fallback).'),
    ratelimitQueueDepth: meter.createUpDownCounter(METRICS.ratelimitQueueDepth, { description: 'Requests waiting in a quota queue, by quota.' }),
    ratelimitQueueWait: meter.createHistogram(METRICS.ratelimitQueueWait, {
      unit: 's',
      description: 'Time requests spent in a quota queue, by quota and result (allowed, rejected, cancelled).',
      advice: { explicitBucketBoundaries: QUEUE_WAIT_BUCKETS_S },
    }),
    tlsHandshakeFailures: createCounterCells(meter, METRICS.tlsHandshakeFailures, 'TLS handshakes refused or not finished, by listener and reason.'),
    cacheRequests: createCounterCells(meter, METRICS.cacheRequests, 'Requests of cache routes by route and result (hit, miss, stale, revalidated, bypass).'),
    coalescedRequests: createCounterCells(meter, METRICS.coalescedRequests, 'Requests answered with the answer of an identical request in flight, by route.'),
    hedges: createCounterCells(meter, METRICS.hedges, 'Hedged tries by route and result (won: answered first; lost).'),
    prometheus: prometheus === undefined ? undefined : () => prometheusText(prometheus),
    shutdown: () => {
      runtime?.stop();
      return provider.shutdown();
    },
  };
}

/** The endpoint an upstream attempt went to, as the client histogram's `server.*` attributes name it. */
export interface ClientTarget {
  readonly hostname: string;
  readonly port: number;
}

/**
 * `http.server.request.duration` of a request that ended with `status` (499: the client left).
 * `error.type` is gatehouse's error code, else the status of a 5xx answer (the semconv's rule for
 * servers), so an upstream's 500 passed on is a failure on the metric as it is on the span.
 */
export function recordServer(metrics: Metrics, durationS: number, route: RouteInfo | undefined, method: string, status: number, errorCode: string | undefined): void {
  const v = serverValues; // in SERVER_ATTRIBUTES order
  v[0] = route?.name;
  v[1] = route?.httpRoute;
  v[2] = method;
  v[3] = status;
  v[4] = errorCode ?? (status >= 500 ? STATUS_TEXT[status] : undefined);
  metrics.serverDuration.recordValues(durationS, v);
}

/**
 * `http.client.request.duration` of one upstream attempt: `status` 0 when no answer came, then
 * `failure` says why (connect-failure, reset, timeout, ...). An answer of 4xx or 5xx is a failure
 * too (`error.type` = the status, the semconv's rule for clients).
 */
export function recordClient(
  metrics: Metrics,
  durationS: number,
  upstream: string,
  route: string | undefined,
  target: ClientTarget,
  method: string,
  status: number,
  failure: string | undefined,
): void {
  const v = clientValues; // in CLIENT_ATTRIBUTES order
  v[0] = upstream;
  v[1] = route;
  v[2] = target.hostname;
  v[3] = target.port;
  v[4] = method;
  v[5] = status !== 0 ? status : undefined;
  v[6] = failure ?? (status >= 400 ? STATUS_TEXT[status] : undefined);
  metrics.clientDuration.recordValues(durationS, v);
}

/** '0'..'599': a status as `error.type` without making a string per request. */
const STATUS_TEXT: readonly string[] = Array.from({ length: 600 }, (_, i) => String(i));

/**
 * The values of one record, refilled by each call (recording is synchronous and the histogram
 * copies what it keeps), so a request allocates no attribute object.
 */
const serverValues: (AttributeValue | undefined)[] = new Array<AttributeValue | undefined>(SERVER_ATTRIBUTES.length).fill(undefined);
const clientValues: (AttributeValue | undefined)[] = new Array<AttributeValue | undefined>(CLIENT_ATTRIBUTES.length).fill(undefined);

/** One series of a CounterCells counter: `value++` is all a request pays. */
export interface CounterCell {
  value: number;
}

/** The cell of one attribute set; ask once (at compile time) and keep it. Cells live as long as the process. */
export type CounterCells = (attributes: Attributes) => CounterCell;

/**
 * A counter for the request path: plain numbers, reported as an asynchronous (observable)
 * counter when a reader collects. A synchronous Counter.add() would hash its attributes on every
 * call; here the series is chosen once, when the caller asks for its cell.
 */
export function createCounterCells(meter: Meter, name: string, description: string): CounterCells {
  const cells = new Map<string, { readonly attributes: Attributes; readonly cell: CounterCell }>();
  meter.createObservableCounter(name, { description }).addCallback((result) => {
    for (const { attributes, cell } of cells.values()) result.observe(cell.value, attributes);
  });
  return (attributes) => {
    const key = JSON.stringify(Object.entries(attributes).sort(([a], [b]) => (a < b ? -1 : 1)));
    let entry = cells.get(key);
    if (entry === undefined) {
      entry = { attributes: { ...attributes }, cell: { value: 0 } };
      cells.set(key, entry);
    }
    return entry.cell;
  };
}

const serializer = new PrometheusSerializer('', false, undefined, false, true);

/**
 * The exporter's text with the unit suffixes the OTel-to-Prometheus rules ask for and this exporter
 * version leaves out, so the names are those an OTel Collector's Prometheus exporter would give:
 * `http.server.request.duration` (unit s) -> `http_server_request_duration_seconds`,
 * `process.memory.usage` (By) -> `process_memory_usage_bytes`, `nodejs.eventloop.utilization`
 * (a gauge of unit 1) -> `nodejs_eventloop_utilization_ratio`. Annotations (`{resource}`) add nothing.
 */
async function prometheusText(exporter: PrometheusExporter): Promise<string> {
  const { resourceMetrics } = await exporter.collect();
  return serializer.serialize({
    ...resourceMetrics,
    scopeMetrics: resourceMetrics.scopeMetrics.map((scope) => ({
      ...scope,
      metrics: scope.metrics.map((m) => {
        const suffix = unitSuffix(m);
        return suffix === undefined || m.descriptor.name.endsWith(suffix) ? m : { ...m, descriptor: { ...m.descriptor, name: m.descriptor.name + suffix } };
      }),
    })),
  });
}

function unitSuffix(m: MetricData): string | undefined {
  switch (m.descriptor.unit) {
    case 's':
      return '_seconds';
    case 'By':
      return '_bytes';
    case '1':
      return m.dataPointType === DataPointType.GAUGE ? '_ratio' : undefined;
    default:
      return undefined;
  }
}
