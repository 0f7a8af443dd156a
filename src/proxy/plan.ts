import { BlockList } from 'node:net';
import type { Logger } from 'pino';
import { fingerprint } from '../config/fingerprint.js';
import type { LoadedConfig } from '../config/load.js';
import type { Config, ListenerConfig, RouteConfig } from '../config/schema.js';
import { compileQuotas, compileRouteQuota, type QuotaDeps, type QuotaRegistry } from '../quota/quota.js';
import type { Clock } from '../core/clock.js';
import { deadline } from '../resilience/deadline.js';
import { compileResilience } from '../resilience/policies.js';
import type { StoreRegistry } from '../stores/stores.js';
import { compileMatch, httpRouteOf, type Matcher } from '../routing/match.js';
import { compileRewrite, type PathRewrite } from '../routing/rewrite.js';
import { createCredentials } from '../security/credentials.js';
import { createKeySet, keySetId, type KeySet } from '../security/jwks.js';
import { compileJwt } from '../security/jwt.js';
import { compileClientCertForwarding, loadUpstreamTls } from '../security/tls.js';
import { createEventLog } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Tracing } from '../telemetry/tracing.js';
import type { AuthObserver } from '../security/jwt.js';
import type { QuotaObserver } from '../quota/quota.js';
import { compileBudgets, type BudgetObserver, type BudgetRegistry } from '../budget/budget.js';
import type { BreakerObserver } from '../resilience/breaker.js';
import type { HealthObserver } from '../resilience/health.js';
import type { RetryObserver } from '../resilience/retry.js';
import { compileHedge, type HedgeObserver } from '../resilience/hedge.js';
import { compileReadPath, type CacheObserver } from '../cache/read-path.js';
import { createMemoryStore, createRedisStore, createSqliteStore, type CacheStore, type MemoryCacheStore } from '../cache/store.js';
import type { Exchange, RouteInfo, Stage } from '../core/exchange.js';
import { proxyAttempt, upstreamClient } from './dispatch.js';
import type { UpstreamClient } from '../core/upstream.js';
import { idempotencyKey } from './idempotency.js';
import type { RequestHeaderPlan } from '../core/forwarding.js';
import { storedResponder, type ResponseHeaderPlan } from './headers.js';
import { compose, type Policy, type Send } from '../core/send.js';
import { createUpstream, type UpstreamRuntime } from './upstreams.js';
import type { DeliveryTarget } from '../delivery/engine.js';
import { WEBHOOK_DEFAULT_MAX_BODY, type WebhookRegistry, type WebhookRoute } from '../webhook/runtime.js';
import type { OutboxRegistry, OutboxRoute } from '../delivery/outbox.js';

/**
 * The compiled, immutable form of a config (STYLE §2): every matcher, Set, header list and
 * policy stack is built here once. A request reads the current plan once and keeps it, so a
 * reload never changes the rules under a request in flight.
 */
export interface Plan {
  /** Increases with every successful (re)load. */
  readonly version: number;
  readonly loaded: LoadedConfig;
  readonly config: Config;
  readonly listeners: ReadonlyMap<string, ListenerPlan>;
  readonly upstreams: ReadonlyMap<string, UpstreamRuntime>;
  /** Quota runtimes (buckets, queues) and provider pauses; handed on to the next plan. */
  readonly quotas: QuotaRegistry;
  /** Provider budgets and concurrency limits per upstream (SPEC §12); handed on to the next plan. */
  readonly budgets: BudgetRegistry;
  /** JWT key sets by source (`keySetId`): shared by routes, kept across reloads. */
  readonly keySets: ReadonlyMap<string, KeySet>;
  /** Webhook routes: activated (their delivery workers run) once this plan is live. */
  readonly webhooks: readonly WebhookRoute[];
  /** Outbox routes (`delivery.mode` async or fallback): activated once this plan is live. */
  readonly outbox: readonly OutboxRoute[];
  /** Memory caches by route, with the fingerprint of their config: kept across reloads while it is unchanged. */
  readonly caches: ReadonlyMap<string, MemoryCache>;
}

export interface MemoryCache {
  readonly print: string;
  readonly store: MemoryCacheStore;
}

export interface ListenerPlan {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly scheme: 'http' | 'https';
  /** undefined when no `trustedProxies`: every peer's X-Forwarded-* is then replaced. */
  readonly trusted: BlockList | undefined;
  /** `limits.maxHeaders`: more header fields than this -> 431. */
  readonly maxHeaders: number;
  /** `limits.bodyTimeout`: longest a request body may go without a byte arriving. */
  readonly bodyTimeoutMs: number;
  /** `limits.bufferBodies`: bodies up to this size are read whole before being forwarded. */
  readonly bufferBodyBytes: number;
  readonly routes: readonly RoutePlan[];
}

export interface RoutePlan {
  readonly info: RouteInfo;
  readonly config: RouteConfig;
  readonly match: Matcher;
  readonly rewrite: PathRewrite;
  readonly upstream: UpstreamRuntime;
  /** Steps between routing and forwarding (jwt, quota, ...), in order. */
  readonly stages: readonly Stage[];
  /**
   * Answers the request instead of forwarding it (a webhook intake); undefined = forward with
   * `send`. Called once every stage has passed; it owns `ex.res` from then on.
   */
  readonly handler: ((ex: Exchange) => void) | undefined;
  readonly send: Send;
  readonly requestHeaders: RequestHeaderPlan;
  readonly responseHeaders: ResponseHeaderPlan;
  readonly maxBodyBytes: number | undefined;
  readonly websocket: boolean;
  /** `rewrite.host`: undefined = the endpoint's authority, 'preserve' = the client's Host. */
  readonly host: string | undefined;
}

export interface PlanDeps {
  readonly tracing: Tracing | undefined;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly stores: StoreRegistry;
  readonly isDraining: () => boolean;
  readonly webhooks: WebhookRegistry;
  readonly outbox: OutboxRegistry;
  /** What policies report to; built once by the composition root (telemetry implements them). */
  readonly observers: PlanObservers;
}

export interface PlanObservers {
  readonly resilience: RetryObserver & BreakerObserver & HealthObserver & HedgeObserver;
  readonly cache: CacheObserver;
  readonly quota: QuotaObserver;
  readonly auth: AuthObserver;
  readonly budget: BudgetObserver;
}

/** What compiling one route needs besides its own config: the plan being built and its runtimes. */
interface RouteContext {
  readonly deps: PlanDeps;
  readonly config: Config;
  readonly upstream: UpstreamRuntime;
  readonly listener: ListenerConfig;
  /** The route's JWT key set (shared by routes with the same source, kept across reloads). */
  readonly keys: KeySet | undefined;
  /** Every header a JWT route of the config forwards claims in. */
  readonly claimHeaders: readonly string[];
  /** Headers that carry client-certificate facts: only an mTLS listener's stage sets them. */
  readonly clientCertHeaders: readonly string[];
  readonly quotas: QuotaRegistry;
  readonly quotaDeps: QuotaDeps;
  /** Collects the plan's webhook routes, activated once the plan is live. */
  readonly webhooks: WebhookRoute[];
  /** Collects the plan's outbox routes, activated once the plan is live. */
  readonly outbox: OutboxRoute[];
  /** Any upstream of the plan, as a concern calls it (webhook destinations, reconciliation). */
  readonly clientOf: (upstream: string) => UpstreamClient;
  /** The previous plan's memory caches, and this plan's (filled as routes compile). */
  readonly previousCaches: ReadonlyMap<string, MemoryCache> | undefined;
  readonly caches: Map<string, MemoryCache>;
}

/**
 * Builds a plan. Upstream runtimes (pools, and later breakers and health) are taken over from
 * `previous` when their config is unchanged; the caller closes the ones left behind.
 */
export function compilePlan(loaded: LoadedConfig, deps: PlanDeps, version: number, previous?: Plan): Plan {
  const { config } = loaded;
  const upstreams = compileUpstreams(config, deps, previous);
  // [budget] the provider budgets admit every attempt to their upstream (inside the dispatch)
  const budgets = compileBudgets(config, { clock: deps.clock, stores: deps.stores, observer: deps.observers.budget }, previous?.budgets);
  for (const [name, upstream] of upstreams) upstream.gate = budgets.budgets.get(name);
  const quotaDeps: QuotaDeps = { clock: deps.clock, stores: deps.stores, observer: deps.observers.quota };
  const quotas = compileQuotas(config, quotaDeps, previous?.quotas);
  const keySets = new Map<string, KeySet>();
  const keySetFor = (jwt: NonNullable<RouteConfig['jwt']>): KeySet => {
    const id = keySetId(jwt);
    let keys = keySets.get(id) ?? previous?.keySets.get(id);
    keys ??= createKeySet(jwt, deps.clock);
    keySets.set(id, keys);
    return keys;
  };
  const listenerConfigs = new Map(config.listeners.map((l) => [l.name, l]));
  // Claim headers a JWT route asserts are removed from client requests on every route: a public
  // route to the same upstream must not let a client pick its `x-user-id` (SPEC §3.1).
  const claimHeaders = [...new Set(config.routes.flatMap((r) => Object.values(r.jwt?.forwardClaims ?? {})))];
  const clientCertHeaders = clientCertHeaderNames(config.listeners);

  const routesByListener = new Map<string, RoutePlan[]>();
  const webhooks: WebhookRoute[] = [];
  const outbox: OutboxRoute[] = [];
  const clients = new Map<string, UpstreamClient>();
  const clientOf = (name: string): UpstreamClient => {
    let client = clients.get(name);
    if (client === undefined) clients.set(name, (client = upstreamClient(upstreams.get(name)!, deps)));
    return client;
  };
  const caches = new Map<string, MemoryCache>();
  for (const route of config.routes) {
    const plan = compileRoute(route, {
      deps,
      config,
      upstream: upstreams.get(route.upstream)!,
      listener: listenerConfigs.get(route.listener)!,
      keys: route.jwt === undefined ? undefined : keySetFor(route.jwt),
      claimHeaders,
      clientCertHeaders,
      quotas,
      quotaDeps,
      webhooks,
      outbox,
      clientOf,
      previousCaches: previous?.caches,
      caches,
    });
    const list = routesByListener.get(route.listener) ?? [];
    list.push(plan);
    routesByListener.set(route.listener, list);
  }

  const listeners = new Map<string, ListenerPlan>();
  for (const l of config.listeners) {
    listeners.set(l.name, {
      name: l.name,
      config: l,
      scheme: l.tls === undefined ? 'http' : 'https',
      trusted: compileTrusted(l.trustedProxies),
      maxHeaders: l.limits.maxHeaders,
      bodyTimeoutMs: l.limits.bodyTimeout,
      bufferBodyBytes: l.limits.bufferBodies,
      routes: routesByListener.get(l.name) ?? [],
    });
  }

  return { version, loaded, config, listeners, upstreams, quotas, budgets, keySets, webhooks, outbox, caches };
}

/** Upstream runtimes (pools, breakers, health) are taken over from `previous` when their config is unchanged. */
function compileUpstreams(config: Config, deps: PlanDeps, previous: Plan | undefined): Map<string, UpstreamRuntime> {
  const upstreams = new Map<string, UpstreamRuntime>();
  for (const [name, cfg] of Object.entries(config.upstreams)) {
    // TLS files are part of the fingerprint: a reload after a certificate change rebuilds the pools.
    const tls = cfg.tls === undefined ? undefined : loadUpstreamTls(cfg.tls);
    if (tls?.insecure) deps.logger.warn({ upstream: name }, 'upstream TLS certificate verification is OFF (insecureSkipVerify: true)');
    const print = fingerprint([cfg, tls?.digest]);
    const old = previous?.upstreams.get(name);
    upstreams.set(
      name,
      old !== undefined && old.fingerprint === print
        ? old
        : createUpstream(name, cfg, print, {
            clock: deps.clock,
            rand: deps.rand,
            observer: deps.observers.resilience,
            tls,
            credentials: cfg.credentials === undefined ? undefined : createCredentials(name, cfg.credentials, deps),
          }),
    );
  }

  return upstreams;
}

function compileRoute(route: RouteConfig, ctx: RouteContext): RoutePlan {
  const { deps, upstream } = ctx;
  // [security] headers gatehouse asserts are stripped from the client's request at compile time
  const jwt = route.jwt === undefined ? undefined : compileJwt(route.jwt, ctx.keys!, { clock: deps.clock, observer: deps.observers.auth });
  const clientCert = compileClientCertForwarding(ctx.listener.tls?.forwardClientCert);
  const credentials = upstream.credentials;
  const asserted = [...ctx.claimHeaders, ...(jwt?.strip ?? []), ...ctx.clientCertHeaders, ...(credentials === undefined ? [] : [credentials.header])];
  const requestHeaders: RequestHeaderPlan = {
    // [telemetry] trace headers gatehouse writes (b3) replace the client's copies
    strip: new Set([...route.headers.request.remove, ...Object.keys(route.headers.request.set), ...asserted, ...(deps.tracing?.fields ?? [])].map((h) => h.toLowerCase())),
    set: Object.entries(route.headers.request.set).flat(),
    replaceTraceContext: deps.tracing?.traceContext ?? false,
    allowUnderscores: ctx.listener.limits.allowUnderscoreHeaders,
  };
  const responseHeaders: ResponseHeaderPlan = {
    strip: new Set([...route.headers.response.remove, ...Object.keys(route.headers.response.set)].map((h) => h.toLowerCase())),
    set: Object.entries(route.headers.response.set).flat(),
  };
  const host = route.rewrite?.host;
  const rewrite = compileRewrite(route);
  // [delivery] an outbox route (async, fallback) stores writes and delivers them in the background
  const durable = route.delivery !== undefined && route.delivery.mode !== 'sync' ? route.delivery : undefined;
  // A webhook's body is read whole to verify it, an outbox write's to store it: both always have a limit.
  const bodyLimit = route.webhook !== undefined ? WEBHOOK_DEFAULT_MAX_BODY : durable?.maxBodySize;
  const maxBodyBytes = route.maxBodySize === undefined ? bodyLimit : Math.min(route.maxBodySize, bodyLimit ?? Infinity);
  // [webhooks] a webhook route answers the provider itself and delivers in the background,
  // through the same upstream dispatch as proxied traffic
  const target = route.webhook !== undefined || durable !== undefined ? { upstream: upstreamClient(upstream, deps), rewrite, host, timeoutMs: route.timeout } : undefined;
  const intake = route.webhook === undefined ? undefined : compileWebhook(route, ctx, target!, requestHeaders);
  const outbox = durable === undefined ? undefined : deps.outbox.compile({ route, target: target!, config: ctx.config, isDraining: deps.isDraining });
  if (outbox !== undefined) ctx.outbox.push(outbox);

  // Stages run in this order between routing and forwarding; each may refuse the request.
  const stages: Stage[] = [];
  const quota = compileRouteQuota(route, ctx.quotas, ctx.quotaDeps);
  // [quota] RateLimit-Policy goes on every answer of the route, a 401 included
  if (quota !== undefined) stages.push(quota.announce);
  // [security] jwt: authenticate first, so quotas can key on claims
  if (clientCert !== undefined) stages.push(clientCert.stage);
  if (jwt !== undefined) stages.push(jwt.stage);
  // [quota] quotas: count only authenticated requests
  if (quota !== undefined) stages.push(quota.stage);
  // [security] outbound credentials are no stage: the upstream dispatch adds them to each attempt
  // (so no token is fetched for a request refused before, nor at a webhook's intake)
  // [webhooks] last, before `100 Continue` and the body: the signature header and a reading slot
  if (intake !== undefined) stages.push(intake.admit);
  // [cache] the lookup comes after authentication and quotas: a hit is answered right there
  const readPath = route.cache !== undefined || route.coalesce ? compileRouteReadPath(route, ctx, requestHeaders, responseHeaders, rewrite, stages.length > 0) : undefined;
  if (readPath?.first !== undefined) stages.unshift(readPath.first);
  if (readPath?.lookup !== undefined) stages.push(readPath.lookup);

  // Policies wrap the attempt, outermost first: deadline ⊃ retry ⊃ ... ⊃ attempt. The attempt is
  // the upstream dispatch: breaker, bulkhead, credentials, endpoint, span and metrics per try.
  const policies: Policy[] = [];
  // [delivery] outermost: async stores at once; fallback sees the whole route's outcome, its deadline and retries included
  if (outbox !== undefined) policies.push(outbox.policy);
  policies.push(deadline(route.timeout, deps.clock));
  // [cache] revalidation, stale-if-error, filling the cache and coalescing: inside the deadline,
  // outside retries (one fill or one shared answer for all of a request's tries)
  if (readPath !== undefined) policies.push(readPath.policy);
  // [resilience] retry
  if (route.idempotencyKey === 'generate') policies.push(idempotencyKey()); // outside retry: one key for every attempt
  policies.push(...compileResilience(route, upstream, { clock: deps.clock, rand: deps.rand, observer: deps.observers.resilience }));
  // [security] a 401 refreshes the OAuth2 token and replays this one attempt
  if (credentials?.policy !== undefined) policies.push(credentials.policy);
  // [quota] innermost: limits a provider announces are read from every attempt's answer
  if (quota?.observe !== undefined) policies.push(quota.observe);

  // [resilience] hedging: the decision in resilience/, the race between tries in the dispatch
  const hedging = route.hedge === undefined ? undefined : { plan: compileHedge(route.hedge, route.retry?.budget), load: upstream, observer: deps.observers.resilience };
  const watched = readPath !== undefined || hedging !== undefined ? { hedging } : undefined;

  return {
    info: { name: route.name, httpRoute: httpRouteOf(route.match), upstream: upstream.name, priority: route.priority, log: createEventLog(deps.logger) },
    config: route,
    match: compileMatch(route.match),
    rewrite,
    upstream,
    stages,
    handler: intake?.handler,
    send: compose(policies, proxyAttempt(upstream, responseHeaders, host, deps, watched)),
    requestHeaders,
    responseHeaders,
    maxBodyBytes,
    websocket: route.websocket,
    host,
  };
}

/** The route's cache (its store: memory, kept across reloads, or a named sqlite/redis store) and coalescing. */
function compileRouteReadPath(
  route: RouteConfig,
  ctx: RouteContext,
  requestHeaders: RequestHeaderPlan,
  responseHeaders: ResponseHeaderPlan,
  rewrite: PathRewrite,
  hasStagesBefore: boolean,
) {
  const { deps } = ctx;
  let store: CacheStore | undefined;
  const cache = route.cache;
  if (cache !== undefined) {
    const named = cache.store === 'memory' ? undefined : deps.stores.config(cache.store);
    if (named === undefined || named.type === 'memory') {
      const print = fingerprint([cache.store, cache.maxSize]);
      const old = ctx.previousCaches?.get(route.name);
      const memory = old?.print === print ? old.store : createMemoryStore(cache.maxSize, deps.clock);
      ctx.caches.set(route.name, { print, store: memory });
      store = memory;
    } else if (named.type === 'sqlite') {
      store = createSqliteStore(deps.stores.sqlite(cache.store), route.name, deps.clock, deps.logger);
    } else {
      store = createRedisStore(deps.stores.redis(cache.store), route.name, deps.logger);
    }
  }
  return compileReadPath(cache, route.coalesce, route.name, hasStagesBefore, {
    clock: deps.clock,
    store,
    observer: deps.observers.cache.forRoute(route.name),
    respond: storedResponder(responseHeaders, deps.isDraining),
    upstream: upstreamClient(ctx.upstream, deps),
    requestHeaders,
    target: (ex) => rewrite(ex.path) + ex.query,
    host: route.rewrite?.host,
    timeoutMs: route.timeout,
  });
}

function compileWebhook(route: RouteConfig, ctx: RouteContext, target: DeliveryTarget, requestHeaders: RequestHeaderPlan): WebhookRoute {
  const webhook = ctx.deps.webhooks.compile({ route, config: ctx.config, target, clientOf: ctx.clientOf, requestHeaders, isDraining: ctx.deps.isDraining });
  ctx.webhooks.push(webhook);
  return webhook;
}

/**
 * Every listener's `forwardClientCert` names, and Envoy's `x-forwarded-client-cert`: an upstream
 * behind several listeners cannot tell which one a request came through, so a client must not be
 * able to send these on a plain listener and pass for a verified certificate.
 */
function clientCertHeaderNames(listeners: readonly ListenerConfig[]): string[] {
  const names = new Set(['x-forwarded-client-cert']);
  for (const l of listeners) {
    const f = l.tls?.forwardClientCert;
    if (f?.subject !== undefined) names.add(f.subject.toLowerCase());
    if (f?.fingerprint !== undefined) names.add(f.fingerprint.toLowerCase());
  }
  return [...names];
}

function compileTrusted(cidrs: readonly string[]): BlockList | undefined {
  if (cidrs.length === 0) return undefined;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [ip, prefix] = cidr.split('/') as [string, string | undefined];
    const family = ip.includes(':') ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(ip, family);
    else list.addSubnet(ip, Number(prefix), family);
  }
  return list;
}

/** Upstream runtimes in `previous` that `next` no longer uses: close them once they drain. */
export function retiredUpstreams(previous: Plan, next: Plan): UpstreamRuntime[] {
  const kept = new Set(next.upstreams.values());
  return [...previous.upstreams.values()].filter((u) => !kept.has(u));
}

/** `GET /admin/caches`: each cache route's store, and for memory stores what they hold. */
export function cachesView(plan: Plan): { caches: Record<string, { store: string; entries?: number; bytes?: number; maxSize?: number }> } {
  const caches: Record<string, { store: string; entries?: number; bytes?: number; maxSize?: number }> = {};
  for (const route of plan.config.routes) {
    if (route.cache === undefined) continue;
    const memory = plan.caches.get(route.name)?.store;
    caches[route.name] =
      memory === undefined ? { store: route.cache.store } : { store: route.cache.store, entries: memory.size, bytes: memory.bytes, maxSize: route.cache.maxSize };
  }
  return { caches };
}
