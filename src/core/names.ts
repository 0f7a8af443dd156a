/**
 * Every span, attribute and metric name that users' dashboards depend on (SPEC §8), in one place.
 * Metric names are OTel instrument names; the Prometheus exporter turns `a.b.c` with unit `s`
 * into `a_b_c_seconds` and counters into `..._total`.
 */

export const METRICS = {
  serverDuration: 'http.server.request.duration',
  clientDuration: 'http.client.request.duration',
  configReloads: 'gatehouse.config.reloads',
  ratelimitDecisions: 'gatehouse.ratelimit.decisions',
  ratelimitQueueDepth: 'gatehouse.ratelimit.queue.depth',
  ratelimitQueueWait: 'gatehouse.ratelimit.queue.wait',
  retries: 'gatehouse.retries',
  retriesSkipped: 'gatehouse.retries.skipped',
  circuitState: 'gatehouse.circuit.state',
  upstreamHealthy: 'gatehouse.upstream.healthy',
  webhookEvents: 'gatehouse.webhook.events',
  webhookDeliveryLag: 'gatehouse.webhook.delivery.lag',
  webhookPending: 'gatehouse.webhook.pending',
  webhookDeliveries: 'gatehouse.webhook.deliveries',
  webhookReconciled: 'gatehouse.webhook.reconciled',
  outboxMessages: 'gatehouse.outbox.messages',
  outboxDeliveries: 'gatehouse.outbox.deliveries',
  outboxLag: 'gatehouse.outbox.lag',
  authDecisions: 'gatehouse.auth.decisions',
  storeUp: 'gatehouse.store.up',
  tlsHandshakeFailures: 'gatehouse.tls.handshake.failures',
  cacheRequests: 'gatehouse.cache.requests',
  coalescedRequests: 'gatehouse.coalesced.requests',
  hedges: 'gatehouse.hedges',
  /** Runtime metrics of our own (runtime-metrics.ts); the rest come from the OTel runtime instrumentation. */
  processCpuTime: 'process.cpu.time',
  processMemoryUsage: 'process.memory.usage',
  processOpenFiles: 'process.unix.file_descriptor.count',
  budgetAvailable: 'gatehouse.budget.available',
  budgetWait: 'gatehouse.budget.wait',
  budgetThrottled: 'gatehouse.budget.throttled',
  upstreamConcurrencyLimit: 'gatehouse.upstream.concurrency_limit',
} as const;

/**
 * The instruments of @opentelemetry/instrumentation-runtime-node (see runtime-metrics.ts): not
 * ours to name, listed so the docs and tests can tell what /metrics has.
 */
export const RUNTIME_METRICS = [
  'nodejs.eventloop.delay.min',
  'nodejs.eventloop.delay.max',
  'nodejs.eventloop.delay.mean',
  'nodejs.eventloop.delay.stddev',
  'nodejs.eventloop.delay.p50',
  'nodejs.eventloop.delay.p90',
  'nodejs.eventloop.delay.p99',
  'nodejs.eventloop.utilization',
  'nodejs.eventloop.time',
  'v8js.memory.heap.used',
  'v8js.memory.heap.space.size',
  'v8js.memory.heap.space.available_size',
  'v8js.memory.heap.space.physical_size',
  'v8js.gc.duration',
  'v8js.resource.active',
] as const;

/** Span and metric attribute keys: the stable HTTP semantic conventions, plus gatehouse's own. */
export const ATTR = {
  method: 'http.request.method',
  status: 'http.response.status_code',
  route: 'http.route',
  urlPath: 'url.path',
  urlScheme: 'url.scheme',
  urlQuery: 'url.query',
  urlFull: 'url.full',
  clientAddress: 'client.address',
  userAgent: 'user_agent.original',
  protocolVersion: 'network.protocol.version',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  peerAddress: 'network.peer.address',
  errorType: 'error.type',
  resendCount: 'http.request.resend_count',
  gatehouseRoute: 'gatehouse.route',
  gatehouseUpstream: 'gatehouse.upstream',
  requestId: 'gatehouse.request_id',
  webhookId: 'gatehouse.webhook.id',
  webhookEventId: 'gatehouse.webhook.event_id',
  webhookAttempt: 'gatehouse.webhook.attempt',
  webhookResult: 'gatehouse.webhook.result',
  outboxId: 'gatehouse.outbox.id',
  outboxAttempt: 'gatehouse.outbox.attempt',
  quota: 'gatehouse.quota',
  quotaResult: 'gatehouse.quota.result',
  quotaRetryAfter: 'gatehouse.quota.retry_after_s',
  quotaWaitEstimate: 'gatehouse.quota.wait_estimate_ms',
  quotaWaited: 'gatehouse.quota.waited_ms',
  /** What the cache did for the request: hit, miss, stale, revalidated or bypass. */
  cacheResult: 'gatehouse.cache.result',
  /** true: the request got the answer of an identical one in flight. */
  coalesced: 'gatehouse.coalesced',
  hedgeResult: 'gatehouse.hedge.result',
  budgetOutcome: 'gatehouse.budget.outcome',
  budgetReason: 'gatehouse.budget.reason',
  budgetWaitEstimate: 'gatehouse.budget.wait_estimate_ms',
  budgetWaited: 'gatehouse.budget.waited_ms',
} as const;

/** Span events (on the request's SERVER span) that explain what policies and quotas did. */
export const EVENTS = {
  retry: 'gatehouse.retry',
  retrySkipped: 'gatehouse.retry.skipped',
  breakerTransition: 'gatehouse.circuit_breaker.transition',
  endpointEjected: 'gatehouse.endpoint.ejected',
  /** A quota decision: allowed or rejected, with the quota(s) concerned. */
  quotaDecision: 'gatehouse.quota.decision',
  /** The request joined a quota's queue. */
  quotaQueued: 'gatehouse.quota.queued',
  /** The request left a quota's queue (granted or refused), with the time it waited. */
  quotaReleased: 'gatehouse.quota.released',
  /** A hedged try ended: won (it answered first) or lost. */
  hedge: 'gatehouse.hedge',
  /** The request waits for its provider budget or a concurrency slot (reason budget | concurrency). */
  budgetQueued: 'gatehouse.budget.queued',
  /** The request left the budget's queue, with the time it waited. */
  budgetReleased: 'gatehouse.budget.released',
  /** A provider throttle (Shopify THROTTLED): retried by gatehouse, or returned to the client. */
  budgetThrottled: 'gatehouse.budget.throttled',
} as const;

/** Bucket boundaries for request durations in seconds (the semconv advice). */
export const DURATION_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

/** Bucket boundaries for webhook delivery lag in seconds: from a prompt delivery to hours of retries. */
export const LAG_BUCKETS_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400];

/** Bucket boundaries for quota queue waits in seconds: from a refill tick to a long maxWait. */
export const QUEUE_WAIT_BUCKETS_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
