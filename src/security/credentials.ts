import { request } from 'undici';
import type { Logger } from 'pino';
import type { CredentialsConfig } from '../config/schema.js';
import type { Secret } from '../config/secret.js';
import { GatehouseError } from '../core/errors.js';
import type { Exchange } from '../core/exchange.js';
import type { Policy } from '../core/send.js';
import type { Clock } from '../core/clock.js';

/*
 * `upstreams.*.credentials`: what gatehouse adds to every request to an upstream, so the store
 * never holds the secret. A static header, or an OAuth2 client-credentials token (RFC 6749 §4.4)
 * fetched from `tokenUrl`, cached until shortly before it expires, refreshed by one fetch however
 * many requests wait, and refreshed once more when the upstream answers 401.
 */

/**
 * What the upstream dispatch adds to every attempt, proxied or a delivery: the header value now
 * when one is at hand (`current`), else once it is fetched (`value`).
 */
export interface Credentials {
  /** Lowercase header the credentials go in: the client's own copy is stripped at compile time. */
  readonly header: string;
  /** Refreshes the token and replays a request the upstream answered 401 (OAuth2 only). */
  readonly policy: Policy | undefined;
  /** The header value when it needs no fetch (a static header, a cached token), else undefined. */
  current(): string | undefined;
  /** The header value, fetched if needed (one fetch for all waiters), or the refusal to answer with. */
  value(signal: AbortSignal, ex?: Exchange): Promise<string | GatehouseError>;
  /** The upstream answered 401 to `value`: an OAuth2 token is fetched afresh next time. */
  rejected(value: string): void;
}

export interface CredentialsDeps {
  readonly clock: Clock;
  readonly logger: Logger;
}

export function createCredentials(upstream: string, cfg: CredentialsConfig, deps: CredentialsDeps): Credentials {
  if (cfg.header !== undefined) {
    const { name, value } = cfg.header;
    return {
      header: name.toLowerCase(),
      policy: undefined,
      current: () => value.reveal(),
      value: () => Promise.resolve(value.reveal()),
      rejected: () => {},
    };
  }
  const tokens = createTokenSource(upstream, cfg.oauth2!, deps);
  return {
    header: 'authorization',
    policy: refreshOn401(tokens),
    current: () => tokens.current()?.header,
    value: async (signal, ex) => {
      const token = ex === undefined ? await tokens.fetch(signal) : await tokens.get(ex);
      return token instanceof GatehouseError ? token : token.header;
    },
    rejected: (value) => {
      const t = tokens.current();
      if (t !== undefined && t.header === value) tokens.invalidate(t);
    },
  };
}

export interface Token {
  /** `Bearer <access token>`: the header value. */
  readonly header: string;
  /** Wall-clock ms after which a refresh is due (shortly before expiry). */
  readonly refreshAtMs: number;
  /** Wall-clock ms after which the token is no longer used at all. */
  readonly expiresAtMs: number;
}

export interface TokenSource {
  /** The cached token when it needs no refresh; starts a background refresh once it is due. */
  current(): Token | undefined;
  /** A token, fetching one if needed (one fetch for all waiters), or the refusal to answer with. */
  get(ex: Exchange): Promise<Token | GatehouseError>;
  /** As get(), for work that has no exchange to report to. */
  fetch(signal: AbortSignal): Promise<Token | GatehouseError>;
  /** The upstream refused `token`: drop it unless a newer one has replaced it already. */
  invalidate(token: Token): void;
  readonly fetches: () => number;
}

/** No token for this long when the endpoint gives no `expires_in`. */
const DEFAULT_LIFETIME_MS = 300_000;
/** After a failed fetch, requests are refused at once for this long instead of hammering the endpoint. */
const FAILURE_COOLDOWN_MS = 1_000;

function createTokenSource(upstream: string, cfg: NonNullable<CredentialsConfig['oauth2']>, deps: CredentialsDeps): TokenSource {
  const { clock, logger } = deps;
  const body = new URLSearchParams({ grant_type: 'client_credentials' });
  if (cfg.scopes.length > 0) body.set('scope', cfg.scopes.join(' '));
  if (cfg.audience !== undefined) body.set('audience', cfg.audience);
  const basic = cfg.authMethod === 'basic';
  if (!basic) body.set('client_id', cfg.clientId);
  const form = body.toString();
  const tokenOrigin = new URL(cfg.tokenUrl).origin;

  let token: Token | undefined;
  let pending: Promise<Token | GatehouseError> | undefined;
  let failedUntil = 0;
  let failure: GatehouseError | undefined;
  let fetches = 0;

  const fetchToken = async (): Promise<Token | GatehouseError> => {
    fetches++;
    const startedMs = clock.now();
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    let payload = form;
    if (basic) headers.authorization = basicAuth(cfg.clientId, cfg.clientSecret);
    else payload = `${form}&client_secret=${encodeURIComponent(cfg.clientSecret.reveal())}`;
    let status: number;
    let json: { access_token?: unknown; token_type?: unknown; expires_in?: unknown; error?: unknown };
    try {
      const res = await request(cfg.tokenUrl, {
        method: 'POST',
        headers,
        body: payload,
        signal: AbortSignal.timeout(cfg.timeout),
        maxRedirections: 0,
      } as Parameters<typeof request>[1]);
      status = res.statusCode;
      const text = await res.body.text();
      try {
        json = JSON.parse(text) as typeof json;
      } catch {
        json = {};
      }
    } catch (err) {
      return fail('auth_unavailable', `the token endpoint ${tokenOrigin} cannot be reached`, describeError(err));
    }
    if (status >= 500 || status === 429) return fail('auth_unavailable', `the token endpoint ${tokenOrigin} answered ${status}`, `HTTP ${status}`);
    if (status !== 200) {
      // RFC 6749 §5.2: `error` is a short ASCII code (invalid_client, ...); nothing else of the body is repeated.
      const code = typeof json.error === 'string' && /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(json.error) ? json.error : undefined;
      return fail('bad_gateway', `the token endpoint ${tokenOrigin} refused gatehouse's client credentials (HTTP ${status}${code ? `, ${code}` : ''})`, `HTTP ${status}${code ? ` ${code}` : ''}`);
    }
    const type = typeof json.token_type === 'string' ? json.token_type.toLowerCase() : 'bearer';
    if (typeof json.access_token !== 'string' || json.access_token === '' || type !== 'bearer' || !/^[\x21-\x7e]+$/.test(json.access_token)) {
      return fail('bad_gateway', `the token endpoint ${tokenOrigin} answered without a usable bearer access_token`, 'no bearer access_token');
    }
    const lifetimeMs = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in * 1000 : DEFAULT_LIFETIME_MS;
    // Refresh ahead of expiry: 10% of the lifetime, at most 30 s early.
    const fresh: Token = {
      header: `Bearer ${json.access_token}`,
      refreshAtMs: startedMs + lifetimeMs - Math.min(30_000, lifetimeMs / 10),
      expiresAtMs: startedMs + lifetimeMs,
    };
    token = fresh;
    failure = undefined;
    logger.info({ upstream, tokenEndpoint: tokenOrigin, expiresInS: Math.round(lifetimeMs / 1000) }, 'OAuth2 token fetched');
    return fresh;
  };

  const fail = (code: 'auth_unavailable' | 'bad_gateway', detail: string, reason: string): GatehouseError => {
    failedUntil = clock.now() + FAILURE_COOLDOWN_MS;
    failure = new GatehouseError(code, `cannot get an OAuth2 token for upstream '${upstream}': ${detail}`, code === 'auth_unavailable' ? { 'retry-after': '1' } : undefined);
    logger.error({ upstream, tokenEndpoint: tokenOrigin, reason }, 'OAuth2 token fetch failed');
    return failure;
  };

  const refresh = (): Promise<Token | GatehouseError> => {
    pending ??= fetchToken()
      .catch((err: unknown) => fail('auth_unavailable', 'the token request failed', describeError(err)))
      .finally(() => (pending = undefined));
    return pending;
  };

  return {
    current() {
      const t = token;
      if (t === undefined) return undefined;
      const now = clock.now();
      if (now < t.refreshAtMs) return t;
      if (now >= t.expiresAtMs) return undefined;
      // Due for refresh but still valid: use it, and refresh in the background.
      if (now >= failedUntil) void refresh();
      return t;
    },
    async fetch(signal) {
      const t = this.current();
      if (t !== undefined) return t;
      if (clock.now() < failedUntil && failure !== undefined && pending === undefined) return failure;
      return waitFor(refresh(), signal);
    },
    async get(ex) {
      const t = this.current();
      if (t !== undefined) return t;
      const result = await this.fetch(ex.signal);
      if (result instanceof GatehouseError) ex.event('gatehouse.credentials.token_failed', { upstream, code: result.code });
      else ex.event('gatehouse.credentials.token_fetched', { upstream });
      return result;
    },
    invalidate(t) {
      if (token === t) token = undefined;
    },
    fetches: () => fetches,
  };
}

/**
 * A 401 from the upstream may mean the token was revoked or expired early: fetch a new one and
 * send the request once more. Only when the body can be sent again (none, or buffered for retry);
 * a streamed body's 401 goes to the client, and the next request gets a new token.
 */
function refreshOn401(tokens: TokenSource): Policy {
  return (next) =>
    async function withFreshToken(ex) {
      const replayable = ex.body === null || Buffer.isBuffer(ex.body);
      const outer = ex.retryable;
      if (replayable) ex.retryable = (e, status, headers) => status === 401 || (outer !== undefined && outer(e, status, headers));
      let result;
      try {
        result = await next(ex);
      } finally {
        ex.retryable = outer;
      }
      // the dispatch dropped the refused token already (`rejected`): the next attempt gets a new one
      if (result.statusCode !== 401 || result.committed) return result;
      const fresh = await tokens.get(ex);
      if (fresh instanceof GatehouseError) throw fresh;
      ex.event('gatehouse.credentials.refreshed_on_401', {});
      return next(ex);
    };
}

/** RFC 6749 §2.3.1: client id and secret form-urlencoded, then Basic. */
function basicAuth(clientId: string, secret: Secret): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(secret.reveal())}`).toString('base64')}`;
}

function describeError(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } } | null;
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timed out';
  return 'request failed';
}

/** Waits for a shared promise, but lets this request leave early when it is cancelled. */
function waitFor<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
