import { Agent as HttpsAgent } from 'node:https';
import { Pool } from 'undici';
import type { UpstreamConfig } from '../config/schema.js';
import type { Credentials } from '../security/credentials.js';
import type { UpstreamTls } from '../security/tls.js';

/** One `endpoints` entry: its warm connection pool and live counters. */
export interface Endpoint {
  /** `http://host:port` as configured, for admin and logs. */
  readonly url: string;
  readonly scheme: 'http' | 'https';
  readonly hostname: string;
  readonly port: number;
  /** `host[:port]`: the Host sent upstream unless the route rewrites it. */
  readonly authority: string;
  /** The endpoint URL's path without a trailing slash ('' for none), put before every request path. */
  readonly basePath: string;
  readonly pool: Pool;
  /** For WebSocket upgrades to an https:// endpoint: the same TLS settings as the pool. */
  readonly wsAgent: HttpsAgent | undefined;
  inFlight: number;
}

export interface UpstreamRuntime {
  readonly name: string;
  /** Hash of the config that built it: a reload keeps the runtime (and its pools) when unchanged. */
  readonly fingerprint: string;
  readonly endpoints: readonly Endpoint[];
  /** `credentials`: added to every request; undefined when none are configured. */
  readonly credentials: Credentials | undefined;
  inFlight: number;
  /** The endpoint for the next attempt, or undefined when none can take traffic. */
  pick(): Endpoint | undefined;
  /** The `/admin/upstreams` entry (SPEC §9). */
  view(): UpstreamView;
  /** Waits for requests in flight, then closes the pools. */
  close(): Promise<void>;
}

export interface UpstreamView {
  readonly breaker: { readonly state: 'closed' | 'open' | 'half-open'; readonly retryInMs: number } | null;
  readonly inFlight: number;
  readonly endpoints: readonly { readonly url: string; readonly healthy: boolean; readonly ejected: boolean; readonly inFlight: number }[];
}

export interface UpstreamParts {
  readonly tls?: UpstreamTls | undefined;
  readonly credentials?: Credentials | undefined;
}

export function createUpstream(name: string, cfg: UpstreamConfig, fingerprint: string, parts: UpstreamParts = {}): UpstreamRuntime {
  const tls = parts.tls?.connect;
  const endpoints: Endpoint[] = cfg.endpoints.map((url) => {
    const scheme = url.protocol === 'https:' ? 'https' : 'http';
    const port = url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port);
    return {
      url: url.href.replace(/\/$/, ''),
      scheme,
      hostname: url.hostname,
      port,
      authority: url.host,
      basePath: url.pathname === '/' ? '' : url.pathname.replace(/\/$/, ''),
      pool: new Pool(url.origin, {
        connections: cfg.maxConnections,
        // TLS: verification on unless insecureSkipVerify; a failed handshake sends no request byte.
        connect: scheme === 'https' && tls !== undefined ? { ...tls, timeout: cfg.connectTimeout } : { timeout: cfg.connectTimeout },
        // Keep connections warm between bursts; undici still honours the upstream's own hint.
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 600_000,
        // The route timeout bounds waits; undici's defaults (300 s) must not cut in first.
        headersTimeout: 0,
        bodyTimeout: 0,
      }),
      wsAgent: scheme === 'https' && tls !== undefined ? new HttpsAgent(tls) : undefined,
      inFlight: 0,
    };
  });

  let next = 0;
  const runtime: UpstreamRuntime = {
    name,
    fingerprint,
    endpoints,
    credentials: parts.credentials,
    inFlight: 0,
    pick() {
      const ep = endpoints[next]!;
      next = next + 1 === endpoints.length ? 0 : next + 1;
      return ep;
    },
    view() {
      return {
        breaker: null,
        inFlight: runtime.inFlight,
        endpoints: endpoints.map((e) => ({ url: e.url, healthy: true, ejected: false, inFlight: e.inFlight })),
      };
    },
    async close() {
      await Promise.all(endpoints.map((e) => e.pool.close()));
      for (const e of endpoints) e.wsAgent?.destroy();
    },
  };
  return runtime;
}
