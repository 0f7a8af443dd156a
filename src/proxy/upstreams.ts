import { isIP } from 'node:net';
import { Client, Pool } from 'undici';
import type { UpstreamConfig } from '../config/schema.js';
import { leastRequest, roundRobin, type Balancer } from '../resilience/balancer.js';
import { createBreaker, type Breaker, type BreakerObserver, type BreakerStateName } from '../resilience/breaker.js';
import { createBulkhead, type Bulkhead } from '../resilience/bulkhead.js';
import type { Clock } from '../core/clock.js';
import { createEjection } from '../resilience/ejection.js';
import { createHealthChecker, type HealthObserver } from '../resilience/health.js';
import type { Outcome } from '../core/outcome.js';
import type { RetryLoad } from '../resilience/retry-budget.js';
import type { Credentials } from '../security/credentials.js';
import { upstreamConnector, type UpstreamTls } from '../security/tls.js';
import type { Exchange } from '../core/exchange.js';
import type { UpstreamGate } from '../core/budget.js';

/** One `endpoints` entry: its warm connection pool, live counters and health. */
export interface Endpoint {
  /** `http://host:port` as configured, for admin and logs. */
  readonly url: string;
  readonly scheme: 'http' | 'https';
  readonly hostname: string;
  readonly port: number;
  /** `host[:port]`: the Host sent upstream unless the route rewrites it. */
  readonly authority: string;
  /** The endpoint's IP when it is named by one (the CLIENT span's `network.peer.address`); undefined for a host name. */
  readonly peerAddress: string | undefined;
  /** The endpoint URL's path without a trailing slash ('' for none), put before every request path. */
  readonly basePath: string;
  readonly pool: Pool;
  inFlight: number;
  /** Passes its active health checks (always true without `healthCheck`). */
  healthy: boolean;
  /** Taken out of rotation for failing in live traffic (passive ejection). */
  ejected: boolean;
  /** Failures in live traffic in a row. */
  failures: number;
  /** Ejections in a row: each one lasts twice as long as the one before. */
  ejections: number;
  /** Monotonic time it last rejoined the rotation after an ejection. */
  restoredAt: number;
}

export interface UpstreamRuntime extends RetryLoad {
  readonly name: string;
  /** Hash of the config that built it: a reload keeps the runtime (pools, breaker, health) when unchanged. */
  readonly fingerprint: string;
  readonly endpoints: readonly Endpoint[];
  /** `credentials`: added to every request; undefined when none are configured. */
  readonly credentials: Credentials | undefined;
  inFlight: number;
  retryAttemptsInFlight: number;
  /** `circuitBreaker`, if configured. */
  readonly breaker: Breaker | undefined;
  /** `maxConcurrent`, if configured. */
  readonly bulkhead: Bulkhead | undefined;
  /**
   * The provider budget and concurrency limit (`budget`, `concurrency`), if configured: admits each
   * attempt before it is sent and reads its answer. Set by each plan (the budgets outlive reloads).
   */
  gate: UpstreamGate | undefined;
  /** The endpoint for the next attempt, or undefined when none can take traffic. */
  pick(): Endpoint | undefined;
  /** What one attempt said about its endpoint: counts towards passive ejection. */
  report(ep: Endpoint, outcome: Outcome, ex: Exchange | undefined): void;
  /** The `/admin/upstreams` entry (SPEC §9). */
  view(): UpstreamView;
  /** Stops health checks and ejection timers, waits for requests in flight, then closes the pools. */
  close(): Promise<void>;
}

export interface UpstreamView {
  readonly breaker: { readonly state: BreakerStateName; readonly retryInMs: number } | null;
  readonly inFlight: number;
  readonly endpoints: readonly { readonly url: string; readonly healthy: boolean; readonly ejected: boolean; readonly inFlight: number }[];
}

export interface UpstreamDeps {
  readonly clock: Clock;
  readonly rand: () => number;
  readonly observer: BreakerObserver & HealthObserver;
  readonly tls?: UpstreamTls | undefined;
  readonly credentials?: Credentials | undefined;
}

export function createUpstream(name: string, cfg: UpstreamConfig, fingerprint: string, deps: UpstreamDeps): UpstreamRuntime {
  const { clock, observer } = deps;
  const tls = deps.tls;
  // TLS: verification on unless insecureSkipVerify, against the endpoint's name (or serverName),
  // never the request's Host; a failed handshake sends no request byte.
  const connectOptions = (scheme: 'http' | 'https', hostname: string) =>
    scheme === 'https' ? upstreamConnector(hostname, tls, cfg.connectTimeout) : { timeout: cfg.connectTimeout };
  const endpoints: Endpoint[] = cfg.endpoints.map((url) => {
    const scheme = url.protocol === 'https:' ? 'https' : 'http';
    const port = url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1'); // an IPv6 literal without its brackets
    return {
      url: url.href.replace(/\/$/, ''),
      scheme,
      hostname: url.hostname,
      port,
      authority: url.host,
      peerAddress: isIP(host) !== 0 ? host : undefined,
      basePath: url.pathname === '/' ? '' : url.pathname.replace(/\/$/, ''),
      pool: new Pool(url.origin, {
        connections: cfg.maxConnections,
        connect: connectOptions(scheme, url.hostname),
        // Keep connections warm between bursts; undici still honours the upstream's own hint.
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 600_000,
        // The route timeout bounds waits; undici's defaults (300 s) must not cut in first.
        headersTimeout: 0,
        bodyTimeout: 0,
      }),
      inFlight: 0,
      healthy: true,
      ejected: false,
      failures: 0,
      ejections: 0,
      restoredAt: -Infinity,
    };
  });

  // The rotation: rebuilt only when an endpoint's health or ejection changes.
  let available: readonly Endpoint[] = endpoints;
  const rebuild = () => {
    available = endpoints.filter((e) => e.healthy && !e.ejected);
  };
  const balance: Balancer<Endpoint> = cfg.loadBalancing === 'least-request' ? leastRequest(deps.rand) : roundRobin();

  // ---- passive ejection (resilience/ejection.ts)
  const ejection = createEjection(
    name,
    endpoints,
    cfg.ejection === false || endpoints.length < 2
      ? undefined
      : { consecutiveFailures: cfg.ejection.consecutiveFailures, baseTimeMs: cfg.ejection.baseTime, maxTimeMs: cfg.ejection.maxTime, maxPercent: cfg.ejection.maxPercent },
    { clock, observer, inRotation: () => available.length, changed: rebuild },
  );

  // ---- active health checks, on their own connections so a saturated pool cannot fail them
  const hc = cfg.healthCheck;
  const checkClients = new Map<Endpoint, Client>();
  const checker =
    hc === undefined
      ? undefined
      : createHealthChecker(
          endpoints,
          { intervalMs: hc.interval, timeoutMs: hc.timeout, unhealthyThreshold: hc.unhealthyThreshold, healthyThreshold: hc.healthyThreshold },
          async (ep, signal) => {
            let client = checkClients.get(ep);
            if (client === undefined) {
              client = new Client(new URL(ep.url).origin, { connect: connectOptions(ep.scheme, ep.hostname), headersTimeout: 0, bodyTimeout: 0 });
              checkClients.set(ep, client);
            }
            const res = await client.request({
              path: ep.basePath + hc.path,
              method: 'GET',
              headers: { host: ep.authority, 'user-agent': 'gatehouse-health-check' },
              signal,
            });
            await res.body.dump();
            return res.statusCode >= 200 && res.statusCode < 400;
          },
          (ep, healthy) => {
            ep.healthy = healthy;
            rebuild();
            const detail = healthy
              ? `endpoint ${ep.url} of upstream '${name}' passed ${hc.healthyThreshold} health checks in a row`
              : `endpoint ${ep.url} of upstream '${name}' failed ${hc.unhealthyThreshold} health checks in a row`;
            observer.endpointChange(name, ep.url, healthy ? 'healthy' : 'unhealthy', undefined, detail);
          },
        );

  const breaker =
    cfg.circuitBreaker === undefined
      ? undefined
      : createBreaker(
          name,
          {
            consecutiveFailures: cfg.circuitBreaker.consecutiveFailures,
            failureRatio: cfg.circuitBreaker.failureRatio,
            minRequests: cfg.circuitBreaker.minRequests,
            windowMs: cfg.circuitBreaker.window,
            openForMs: cfg.circuitBreaker.openFor,
            halfOpenRequests: cfg.circuitBreaker.halfOpenRequests,
          },
          clock,
          observer,
        );

  const runtime: UpstreamRuntime = {
    name,
    fingerprint,
    endpoints,
    credentials: deps.credentials,
    inFlight: 0,
    retryAttemptsInFlight: 0,
    retriesInFlight: 0,
    breaker,
    bulkhead: cfg.maxConcurrent === undefined ? undefined : createBulkhead(cfg.maxConcurrent),
    gate: undefined,
    pick: () => balance(available),
    report: ejection.report,
    view() {
      return {
        breaker: breaker?.view() ?? null,
        inFlight: runtime.inFlight,
        endpoints: endpoints.map((e) => ({ url: e.url, healthy: e.healthy, ejected: e.ejected, inFlight: e.inFlight })),
      };
    },
    async close() {
      checker?.stop();
      ejection.close();
      await Promise.all([
        ...[...checkClients.values()].map((c) => c.destroy()),
        ...endpoints.map((e) => e.pool.close()),
        deps.credentials?.close(),
      ]);
    },
  };
  return runtime;
}

