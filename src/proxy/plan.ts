import { BlockList } from 'node:net';
import type { Logger } from 'pino';
import { fingerprint } from '../config/fingerprint.js';
import type { LoadedConfig } from '../config/load.js';
import type { Config, ListenerConfig, RouteConfig } from '../config/schema.js';
import { compileQuotas, compileRouteQuota, type QuotaDeps, type QuotaRegistry } from '../quota/quota.js';
import type { Clock } from '../resilience/clock.js';
import { deadline } from '../resilience/deadline.js';
import type { StoreRegistry } from '../stores/stores.js';
import { compileMatch, httpRouteOf, type Matcher } from '../routing/match.js';
import { compileRewrite, type PathRewrite } from '../routing/rewrite.js';
import type { Metrics } from '../telemetry/metrics.js';
import { createQuotaObserver } from '../telemetry/quota-observer.js';
import type { Tracing } from '../telemetry/tracing.js';
import type { Exchange, RouteInfo, Stage } from './exchange.js';
import { createAttempt } from './forward.js';
import type { RequestHeaderPlan, ResponseHeaderPlan } from './headers.js';
import { compose, type Policy, type Send } from './send.js';
import { createUpstream, type UpstreamRuntime } from './upstreams.js';

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
}

export interface ListenerPlan {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly scheme: 'http' | 'https';
  /** undefined when no `trustedProxies`: every peer's X-Forwarded-* is then replaced. */
  readonly trusted: BlockList | undefined;
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
}

/**
 * Builds a plan. Upstream runtimes (pools, and later breakers and health) are taken over from
 * `previous` when their config is unchanged; the caller closes the ones left behind.
 */
export function compilePlan(loaded: LoadedConfig, deps: PlanDeps, version: number, previous?: Plan): Plan {
  const { config } = loaded;

  const upstreams = new Map<string, UpstreamRuntime>();
  for (const [name, cfg] of Object.entries(config.upstreams)) {
    const print = fingerprint(cfg);
    const old = previous?.upstreams.get(name);
    upstreams.set(name, old !== undefined && old.fingerprint === print ? old : createUpstream(name, cfg, print));
  }

  const quotaDeps: QuotaDeps = { clock: deps.clock, stores: deps.stores, observer: createQuotaObserver(deps.metrics, deps.logger) };
  const quotas = compileQuotas(config, quotaDeps, previous?.quotas);

  const routesByListener = new Map<string, RoutePlan[]>();
  for (const route of config.routes) {
    const plan = compileRoute(route, upstreams.get(route.upstream)!, deps, quotas, quotaDeps);
    const list = routesByListener.get(route.listener) ?? [];
    list.push(plan);
    routesByListener.set(route.listener, list);
  }

  const listeners = new Map<string, ListenerPlan>();
  for (const l of config.listeners) {
    listeners.set(l.name, {
      name: l.name,
      config: l,
      scheme: 'http',
      trusted: compileTrusted(l.trustedProxies),
      routes: routesByListener.get(l.name) ?? [],
    });
  }

  return { version, loaded, config, listeners, upstreams, quotas };
}

function compileRoute(route: RouteConfig, upstream: UpstreamRuntime, deps: PlanDeps, quotas: QuotaRegistry, quotaDeps: QuotaDeps): RoutePlan {
  const requestHeaders: RequestHeaderPlan = {
    strip: new Set([...route.headers.request.remove, ...Object.keys(route.headers.request.set)].map((h) => h.toLowerCase())),
    set: Object.entries(route.headers.request.set).flat(),
    replaceTraceContext: deps.tracing !== undefined,
  };
  const responseHeaders: ResponseHeaderPlan = {
    strip: new Set([...route.headers.response.remove, ...Object.keys(route.headers.response.set)].map((h) => h.toLowerCase())),
    set: Object.entries(route.headers.response.set).flat(),
  };
  const host = route.rewrite?.host;

  // Stages run in this order between routing and forwarding; each may refuse the request.
  const stages: Stage[] = [];
  // [security] jwt: authenticate first, so quotas can key on claims
  // [quota] quotas: count only authenticated requests
  const quota = compileRouteQuota(route, quotas, quotaDeps);
  if (quota !== undefined) stages.push(quota.stage);

  // Policies wrap the attempt, outermost first: deadline ⊃ retry ⊃ breaker ⊃ bulkhead ⊃ attempt.
  const policies: Policy[] = [deadline(route.timeout)];
  // [resilience] retry, circuit breaker, bulkhead
  // [quota] innermost: limits a provider announces are read from every attempt's answer
  if (quota?.observe !== undefined) policies.push(quota.observe);

  return {
    info: { name: route.name, httpRoute: httpRouteOf(route.match), upstream: upstream.name },
    config: route,
    match: compileMatch(route.match),
    rewrite: compileRewrite(route),
    upstream,
    stages,
    // [webhooks] a webhook route answers the provider itself and delivers in the background
    handler: undefined,
    send: compose(policies, createAttempt(upstream, responseHeaders, host, deps)),
    requestHeaders,
    responseHeaders,
    maxBodyBytes: route.maxBodySize,
    websocket: route.websocket,
    host,
  };
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
