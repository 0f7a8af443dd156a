import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, type JWTVerifyGetKey } from 'jose';
import type { JwtConfig } from '../config/schema.js';
import type { Clock } from '../core/clock.js';

/**
 * Where a route's verification keys come from (jose's key-function shape): a remote JWKS
 * (`jwksUri`), one found by OIDC discovery from the `issuer`, or a local file. Routes naming the
 * same source share one key set, and it survives reloads (see `keySetId`).
 */
export interface KeySet {
  readonly getKey: JWTVerifyGetKey;
  /** Changes whenever new keys were loaded: tokens verified before are verified again. */
  generation(): number;
}

type KeySetCode = 'ERR_GATEHOUSE_KEYS_UNAVAILABLE';

/** No key can be had: the JWKS endpoint is down and no cached key fits. Answered 503 auth_unavailable. */
export class KeysUnavailable extends Error {
  readonly code: KeySetCode = 'ERR_GATEHOUSE_KEYS_UNAVAILABLE';
  readonly retryAfterS: number;

  constructor(message: string, retryAfterS: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KeysUnavailable';
    this.retryAfterS = retryAfterS;
  }
}

export interface KeySetOptions {
  /** Keys older than this are fetched again. */
  readonly maxAgeMs: number;
  /** At most one fetch per cooldown for an unknown kid, and no waiting on a failed endpoint within it. */
  readonly cooldownMs: number;
  readonly timeoutMs: number;
  readonly clock: Clock;
}

/** Identity of a key source: routes with equal ids share a key set, and a reload keeps it. */
export function keySetId(cfg: JwtConfig): string {
  const cache = `${cfg.jwksCache.maxAge}/${cfg.jwksCache.cooldown}/${cfg.jwksCache.timeout}`;
  if (cfg.jwks !== undefined) return `file:${cfg.jwks}:${readFileSync(cfg.jwks, 'utf8')}`;
  if (cfg.jwksUri !== undefined) return `uri:${cfg.jwksUri}:${cache}`;
  return `issuer:${cfg.issuer}:${cache}`;
}

export function createKeySet(cfg: JwtConfig, clock: Clock): KeySet {
  const options: KeySetOptions = { maxAgeMs: cfg.jwksCache.maxAge, cooldownMs: cfg.jwksCache.cooldown, timeoutMs: cfg.jwksCache.timeout, clock };
  if (cfg.jwks !== undefined) return createFileKeySet(cfg.jwks);
  if (cfg.jwksUri !== undefined) return createRemoteKeySet(new URL(cfg.jwksUri), options);
  return createDiscoveredKeySet(cfg.issuer!, options);
}

function createFileKeySet(file: string): KeySet {
  const local = createLocalJWKSet(JSON.parse(readFileSync(file, 'utf8')) as Parameters<typeof createLocalJWKSet>[0]);
  return { getKey: local, generation: () => 0 };
}

/**
 * jose's remote key set (cached for maxAge, re-fetched on an unknown kid outside the cooldown,
 * one fetch at a time) plus what it does not do: when a fetch fails, the last keys that were
 * fetched keep verifying tokens, and for one cooldown no request waits on the endpoint again.
 * Only a token whose key is not among them gets 503 (KeysUnavailable).
 */
function createRemoteKeySet(url: URL, options: KeySetOptions): KeySet {
  const { clock, cooldownMs } = options;
  let generation = 0;
  const countingFetch = async (input: string, init: RequestInit) => {
    const res = await fetch(input, init);
    if (res.status === 200) generation++;
    return res;
  };
  const remote = createRemoteJWKSet(url, {
    cacheMaxAge: options.maxAgeMs,
    cooldownDuration: cooldownMs,
    timeoutDuration: options.timeoutMs,
    [customFetch]: countingFetch,
  });
  let downUntil = 0;
  let lastFailure = '';
  let stale: { readonly generation: number; readonly getKey: JWTVerifyGetKey } | undefined;

  const fromStale: JWTVerifyGetKey = async (header, token) => {
    const retryAfterS = Math.max(1, Math.ceil((downUntil - clock.monotonic()) / 1000));
    const jwks = remote.jwks();
    if (jwks === undefined) throw new KeysUnavailable(`the JWKS at ${url.origin} cannot be fetched (${lastFailure})`, retryAfterS);
    if (stale?.generation !== generation) stale = { generation, getKey: createLocalJWKSet(jwks) };
    try {
      return await stale.getKey(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) {
        throw new KeysUnavailable(`the JWKS at ${url.origin} cannot be fetched (${lastFailure}) and no cached key matches the token`, retryAfterS);
      }
      throw err;
    }
  };

  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (clock.monotonic() < downUntil) return fromStale(header, token);
    try {
      return await remote(header, token);
    } catch (err) {
      if (!isFetchFailure(err)) throw err;
      downUntil = clock.monotonic() + cooldownMs;
      lastFailure = describeFetchFailure(err);
      return fromStale(header, token);
    }
  };
  return { getKey, generation: () => generation };
}

/**
 * Keys found from the issuer (OpenID Connect Discovery 1.0 §4): `<issuer>/.well-known/openid-configuration`
 * names the `jwks_uri`, and its `issuer` must be the configured one. Looked up on first use, one
 * lookup at a time; a failed lookup is not retried within the cooldown.
 */
function createDiscoveredKeySet(issuer: string, options: KeySetOptions): KeySet {
  const { clock, cooldownMs } = options;
  const configUrl = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let keys: KeySet | undefined;
  let pending: Promise<KeySet> | undefined;
  let downUntil = 0;
  let lastFailure = '';

  const discover = async (): Promise<KeySet> => {
    const res = await fetch(configUrl, { redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs), headers: { accept: 'application/json' } });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
    if (doc.issuer !== issuer) throw new Error(`the discovery document names another issuer`);
    if (typeof doc.jwks_uri !== 'string') throw new Error('the discovery document has no jwks_uri');
    const jwksUri = new URL(doc.jwks_uri);
    if (jwksUri.protocol !== 'https:' && new URL(issuer).protocol === 'https:') throw new Error('jwks_uri is not https://');
    return createRemoteKeySet(jwksUri, options);
  };

  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (keys === undefined) {
      if (clock.monotonic() < downUntil) {
        throw new KeysUnavailable(`OIDC discovery at ${configUrl} failed (${lastFailure})`, Math.max(1, Math.ceil((downUntil - clock.monotonic()) / 1000)));
      }
      pending ??= discover().finally(() => (pending = undefined));
      try {
        keys = await pending;
      } catch (err) {
        downUntil = clock.monotonic() + cooldownMs;
        lastFailure = describeFetchFailure(err);
        throw new KeysUnavailable(`OIDC discovery at ${configUrl} failed (${lastFailure})`, Math.max(1, Math.ceil(cooldownMs / 1000)), { cause: err });
      }
    }
    return keys.getKey(header, token);
  };
  return { getKey, generation: () => keys?.generation() ?? 0 };
}

/** A failure to get a key set at all, as opposed to a token that no key verifies. */
function isFetchFailure(err: unknown): boolean {
  if (!(err instanceof errors.JOSEError)) return true; // fetch's own TypeError, a DNS or socket error
  return err.code === 'ERR_JWKS_TIMEOUT' || err.code === 'ERR_JOSE_GENERIC' || err.code === 'ERR_JWKS_INVALID';
}

function describeFetchFailure(err: unknown): string {
  if (err instanceof errors.JWKSTimeout) return 'timed out';
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  return (err as Error)?.message ?? String(err);
}
