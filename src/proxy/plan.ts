import { BlockList } from 'node:net';
import type { Logger } from 'pino';
import { fingerprint } from '../config/fingerprint.js';
import type { LoadedConfig } from '../config/load.js';
import type { Config, ListenerConfig, RouteConfig } from '../config/schema.js';
import { compileQuotas, compileRouteQuota, type QuotaDeps, type QuotaRegistry } from '../quota/quota.js';
import type { Clock } from '../resilience/clock.js';
import { deadline } from '../resilience/deadline.js';
import { compileResilience } from '../resilience/policies.js';
import type { StoreRegistry } from '../stores/stores.js';
import { compileMatch, httpRouteOf, type Matcher } from '../routing/match.js';
import { compileRewrite, type PathRewrite } from '../routing/rewrite.js';
import { createCredentials } from '../security/credentials.js';
import { createKeySet, keySetId, type KeySet } from '../security/jwks.js';
import { compileJwt } from '../security/jwt.js';
import { compileClientCertForwarding, loadUpstreamTls } from '../security/tls.js';
import { createAuthObserver } from '../telemetry/auth-observer.js';
import { createEventLog } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import { createQuotaObserver } from '../telemetry/quota-observer.js';
import { createResilienceObserver, type ResilienceObserver } from '../telemetry/resilience-observer.js';
import type { Tracing } from '../telemetry/tracing.js';
import type { AuthObserver } from '../security/jwt.js';
import type { Exchange, RouteInfo, Stage } from './exchange.js';
import { createAttempt } from './forward.js';
import { idempotencyKey } from './idempotency.js';
import type { RequestHeaderPlan, ResponseHeaderPlan } from './headers.js';
import { compose, type Policy, type Send } from './send.js';
import { createUpstream, type UpstreamRuntime } from './upstreams.js';
import { WEBHOOK_DEFAULT_MAX_BODY, type WebhookRegistry, type WebhookRoute } from '../webhook/runtime.js';

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
  /** JWT key sets by source (`keySetId`): shared by routes, kept across reloads. */
  readonly keySets: ReadonlyMap<string, KeySet>;
  /** Webhook routes: activated (their delivery workers run) once this plan is live. */
  readonly webhooks: readonly WebhookRoute[];
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
}

/**
 * Builds a plan. Upstream runtimes (pools, and later breakers and health) are taken over from
 * `previous` when their config is unchanged; the caller closes the ones left behind.
 */
export function compilePlan(loaded: LoadedConfig, deps: PlanDeps, version: number, previous?: Plan): Plan {
  const { config } = loaded;
  const observer = createResilienceObserver(deps.metrics, deps.logger);

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
            observer,
            tls,
            credentials: cfg.credentials === undefined ? undefined : createCredentials(name, cfg.credentials, deps),
          }),
    );
  }

  const quotaDeps: QuotaDeps = { clock: deps.clock, stores: deps.stores, observer: createQuotaObserver(deps.metrics, deps.logger) };
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
  const authObserver = createAuthObserver(deps.metrics);
  // Claim headers a JWT route asserts are removed from client requests on every route: a public
  // route to the same upstream must not let a client pick its `x-user-id` (SPEC §3.1).
  const claimHeaders = [...new Set(config.routes.flatMap((r) => Object.values(r.jwt?.forwardClaims ?? {})))];
  const clientCertHeaders = clientCertHeaderNames(config.listeners);

  const routesByListener = new Map<string, RoutePlan[]>();
  const webhooks: WebhookRoute[] = [];
  for (const route of config.routes) {
    const security: RouteSecurity = {
      listener: listenerConfigs.get(route.listener)!,
      keys: route.jwt === undefined ? undefined : keySetFor(route.jwt),
      authObserver,
      claimHeaders,
      clientCertHeaders,
    };
    const plan = compileRoute(route, upstreams.get(route.upstream)!, deps, security, observer, quotas, quotaDeps, (input) => {
      const webhook = deps.webhooks.compile({ ...input, config });
      webhooks.push(webhook);
      return webhook;
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

  return { version, loaded, config, listeners, upstreams, quotas, keySets, webhooks };
}

/** What compileRoute needs for the route's security stages. */
interface RouteSecurity {
  readonly listener: ListenerConfig;
  readonly keys: KeySet | undefined;
  readonly authObserver: AuthObserver;
  /** Every header a JWT route of the config forwards claims in. */
  readonly claimHeaders: readonly string[];
  /** Headers that carry client-certificate facts: only an mTLS listener's stage sets them. */
  readonly clientCertHeaders: readonly string[];
}

type WebhookSlot = (input: Omit<Parameters<WebhookRegistry['compile']>[0], 'config'>) => Pick<WebhookRoute, 'admit' | 'handler'>;

function compileRoute(
  route: RouteConfig,
  upstream: UpstreamRuntime,
  deps: PlanDeps,
  security: RouteSecurity,
  observer: ResilienceObserver,
  quotas: QuotaRegistry,
  quotaDeps: QuotaDeps,
  webhook: WebhookSlot,
): RoutePlan {
  // [security] headers gatehouse asserts are stripped from the client's request at compile time
  const jwt = route.jwt === undefined ? undefined : compileJwt(route.jwt, security.keys!, { clock: deps.clock, observer: security.authObserver });
  const clientCert = compileClientCertForwarding(security.listener.tls?.forwardClientCert);
  const credentials = upstream.credentials;
  const asserted = [...security.claimHeaders, ...(jwt?.strip ?? []), ...security.clientCertHeaders, ...(credentials === undefined ? [] : [credentials.header])];
  const requestHeaders: RequestHeaderPlan = {
    // [telemetry] trace headers gatehouse writes (b3) replace the client's copies
    strip: new Set([...route.headers.request.remove, ...Object.keys(route.headers.request.set), ...asserted, ...(deps.tracing?.fields ?? [])].map((h) => h.toLowerCase())),
    set: Object.entries(route.headers.request.set).flat(),
    replaceTraceContext: deps.tracing?.traceContext ?? false,
    allowUnderscores: security.listener.limits.allowUnderscoreHeaders,
  };
  const responseHeaders: ResponseHeaderPlan = {
    strip: new Set([...route.headers.response.remove, ...Object.keys(route.headers.response.set)].map((h) => h.toLowerCase())),
    set: Object.entries(route.headers.response.set).flat(),
  };
  const host = route.rewrite?.host;
  const rewrite = compileRewrite(route);
  // A webhook's body is read whole to verify it: it always has a limit.
  const maxBodyBytes = route.maxBodySize ?? (route.webhook !== undefined ? WEBHOOK_DEFAULT_MAX_BODY : undefined);
  // [webhooks] a webhook route answers the provider itself and delivers in the background
  const intake =
    route.webhook === undefined
      ? undefined
      : webhook({
          route,
          target: { upstream, rewrite, host, timeoutMs: route.timeout },
          strip: requestHeaders.strip,
          set: requestHeaders.set,
          isDraining: deps.isDraining,
        });

  // Stages run in this order between routing and forwarding; each may refuse the request.
  const stages: Stage[] = [];
  const quota = compileRouteQuota(route, quotas, quotaDeps);
  // [quota] RateLimit-Policy goes on every answer of the route, a 401 included
  if (quota !== undefined) stages.push(quota.announce);
  // [security] jwt: authenticate first, so quotas can key on claims
  if (clientCert !== undefined) stages.push(clientCert.stage);
  if (jwt !== undefined) stages.push(jwt.stage);
  // [quota] quotas: count only authenticated requests
  if (quota !== undefined) stages.push(quota.stage);
  // [security] outbound credentials last: no token is fetched for a request refused before
  // (not at a webhook's intake: nothing is forwarded from there, and a token endpoint that is
  // down must not turn providers away; each delivery adds them instead)
  if (credentials !== undefined && route.webhook === undefined) stages.push(credentials.stage);
  // [webhooks] last, before `100 Continue` and the body: the signature header and a reading slot
  if (intake !== undefined) stages.push(intake.admit);

  // Policies wrap the attempt, outermost first: deadline ⊃ retry ⊃ breaker ⊃ bulkhead ⊃ attempt.
  const policies: Policy[] = [deadline(route.timeout)];
  // [resilience] retry, circuit breaker, bulkhead
  if (route.idempotencyKey === 'generate') policies.push(idempotencyKey()); // outside retry: one key for every attempt
  policies.push(...compileResilience(route, upstream, { clock: deps.clock, rand: deps.rand, observer }));
  // [security] innermost: a 401 refreshes the OAuth2 token and replays this one attempt
  if (credentials?.policy !== undefined) policies.push(credentials.policy);
  // [quota] innermost: limits a provider announces are read from every attempt's answer
  if (quota?.observe !== undefined) policies.push(quota.observe);

  return {
    info: { name: route.name, httpRoute: httpRouteOf(route.match), upstream: upstream.name, log: createEventLog(deps.logger) },
    config: route,
    match: compileMatch(route.match),
    rewrite,
    upstream,
    stages,
    handler: intake?.handler,
    send: compose(policies, createAttempt(upstream, responseHeaders, host, deps)),
    requestHeaders,
    responseHeaders,
    maxBodyBytes,
    websocket: route.websocket,
    host,
  };
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
