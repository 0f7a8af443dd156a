import { errors, jwtVerify, type JWTPayload, type JWTVerifyOptions } from 'jose';
import type { JwtConfig } from '../config/schema.js';
import { GatehouseError } from '../core/errors.js';
import type { Exchange, Stage } from '../core/exchange.js';
import type { Clock } from '../core/clock.js';
import { toHeaderValue } from './header-value.js';
import { KeysUnavailable, type KeySet } from './jwks.js';

/*
 * The `jwt:` stage of a route: find the bearer token, verify it with jose against the route's
 * key set, check scopes and claims, forward chosen claims as request headers, and leave the
 * verified claims in `ex.claims` for the stages after it (quotas key on `jwt:<claim>`).
 * Refusals are returned values: 401 unauthorized, 403 forbidden, 503 auth_unavailable.
 * No message, log line, span or metric ever carries the token.
 */

/** How a request fared, as counted in `gatehouse_auth_decisions_total{route,result}`. */
export type AuthResult = 'allowed' | 'missing' | 'invalid' | 'expired' | 'forbidden' | 'unavailable';

/** Told about every decision; telemetry turns it into a metric and a span event. */
export interface AuthObserver {
  decided(ex: Exchange, result: AuthResult, reason: string): void;
}

export interface JwtDeps {
  readonly clock: Clock;
  readonly observer: AuthObserver;
}

export interface CompiledJwt {
  readonly stage: Stage;
  /** Lowercase request headers gatehouse asserts (forwarded claims): client copies are stripped. */
  readonly strip: readonly string[];
}

interface Verified {
  readonly claims: JWTPayload;
  /** Forwarded claims as [name, value, ...]. */
  readonly headers: readonly string[];
  /** Until when (wall-clock ms, clock tolerance included) the verification may be reused. */
  readonly untilMs: number;
  readonly generation: number;
}

/** undefined: no token at all; null: something that is not a usable bearer token. */
type TokenReader = (ex: Exchange) => string | undefined | null;

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

export function compileJwt(cfg: JwtConfig, keys: KeySet, deps: JwtDeps): CompiledJwt {
  const { clock, observer } = deps;
  const readToken = compileTokenReader(cfg.from);
  const toleranceMs = cfg.clockTolerance;
  const options: JWTVerifyOptions = {
    algorithms: [...cfg.algorithms],
    ...(cfg.issuer === undefined ? {} : { issuer: cfg.issuer }),
    ...(cfg.audiences === undefined ? {} : { audience: [...cfg.audiences] }),
    clockTolerance: toleranceMs / 1000,
    // A token that never expires is not accepted.
    requiredClaims: ['exp'],
  };
  const checkGrants = compileGrants(cfg);
  const forwarded = Object.entries(cfg.forwardClaims).map(([claim, header]) => [claim, header.toLowerCase()] as const);
  const cache = cfg.cacheSize > 0 ? new Map<string, Verified>() : undefined;
  const maxEntries = cfg.cacheSize;

  const admit = (ex: Exchange, v: Verified): undefined => {
    ex.claims = v.claims;
    for (let i = 0; i < v.headers.length; i += 2) ex.setUpstreamHeader(v.headers[i]!, v.headers[i + 1]!);
    observer.decided(ex, 'allowed', 'valid token');
    return undefined;
  };

  const verify = async (ex: Exchange, token: string): Promise<GatehouseError | undefined> => {
    let claims: JWTPayload;
    const generation = keys.generation();
    try {
      ({ payload: claims } = await jwtVerify(token, keys.getKey, { ...options, currentDate: new Date(clock.now()) }));
    } catch (err) {
      return refuse(ex, err, observer);
    }
    const refusal = checkGrants(claims);
    if (refusal !== undefined) {
      observer.decided(ex, 'forbidden', refusal.message);
      return refusal;
    }
    const headers: string[] = [];
    for (const [claim, header] of forwarded) {
      const value = claimToHeader(claims[claim]);
      if (value !== undefined) headers.push(header, value);
    }
    const v: Verified = { claims, headers, untilMs: claims.exp! * 1000 + toleranceMs, generation };
    if (cache !== undefined) {
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!); // oldest first
      cache.set(token, v);
    }
    return admit(ex, v);
  };

  function jwtStage(ex: Exchange): GatehouseError | undefined | Promise<GatehouseError | undefined> {
    const token = readToken(ex);
    if (token === undefined) {
      observer.decided(ex, 'missing', 'no token');
      // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
      return new GatehouseError('unauthorized', 'a bearer token is required', { 'www-authenticate': 'Bearer' });
    }
    if (token === null) {
      observer.decided(ex, 'invalid', 'malformed');
      return invalidToken('the bearer token is malformed');
    }
    if (cache !== undefined) {
      const hit = cache.get(token);
      if (hit !== undefined) {
        if (hit.untilMs > clock.now() && hit.generation === keys.generation()) return admit(ex, hit);
        cache.delete(token);
      }
    }
    return verify(ex, token);
  }
  return { stage: jwtStage, strip: forwarded.map(([, header]) => header) };
}

function compileTokenReader(from: JwtConfig['from']): TokenReader {
  if (from?.cookie !== undefined) {
    const prefix = `${from.cookie}=`;
    return (ex) => {
      const cookies = ex.header('cookie');
      if (cookies === undefined) return undefined;
      for (const part of cookies.split(';')) {
        const p = part.trim();
        if (p.startsWith(prefix)) return asToken(p.slice(prefix.length));
      }
      return undefined;
    };
  }
  const header = (from?.header ?? 'authorization').toLowerCase();
  if (header === 'authorization') {
    return (ex) => {
      const value = ex.header('authorization');
      if (value === undefined) return undefined;
      // Another scheme (Basic, ...) carries no bearer token: the client is told to use one.
      if (!/^bearer(?: |$)/i.test(value)) return undefined;
      return BEARER.exec(value)?.[1] ?? null;
    };
  }
  return (ex) => {
    const value = ex.header(header);
    if (value === undefined) return undefined;
    const m = BEARER.exec(value);
    return m !== null ? m[1]! : asToken(value.trim());
  };
}

const asToken = (value: string): string | null => (/^[A-Za-z0-9\-._~+/]+=*$/.test(value) ? value : null);

const invalidToken = (description: string) =>
  new GatehouseError('unauthorized', description, { 'www-authenticate': `Bearer error="invalid_token", error_description="${description}"` });

/** jose's verdict -> a 401 whose description says what was wrong, never what the token was. */
function refuse(ex: Exchange, err: unknown, observer: AuthObserver): GatehouseError {
  if (err instanceof KeysUnavailable) {
    observer.decided(ex, 'unavailable', err.message);
    return new GatehouseError('auth_unavailable', 'the keys to verify the token cannot be fetched right now', {
      'retry-after': String(err.retryAfterS),
    });
  }
  const [result, description] = describeFailure(err);
  observer.decided(ex, result, description);
  return invalidToken(description);
}

function describeFailure(err: unknown): [AuthResult, string] {
  if (!(err instanceof errors.JOSEError)) return ['invalid', 'the token could not be verified'];
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return ['expired', 'the token has expired'];
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const { claim, reason } = err as errors.JWTClaimValidationFailed;
      if (reason === 'missing') return ['invalid', `the token has no ${claim} claim`];
      switch (claim) {
        case 'nbf':
          return ['invalid', 'the token is not valid yet'];
        case 'iss':
          return ['invalid', 'the token was issued by an issuer that is not accepted'];
        case 'aud':
          return ['invalid', 'the token is for an audience that is not accepted'];
        default:
          return ['invalid', `the token's ${claim} claim is invalid`];
      }
    }
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return ['invalid', "the token's signing algorithm is not accepted"];
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return ['invalid', "the token's signature is invalid"];
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return ['invalid', 'no known key matches the token'];
    case 'ERR_JOSE_NOT_SUPPORTED':
      return ['invalid', "the token's algorithm or key type is not supported"];
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JWK_INVALID':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
    case 'ERR_JOSE_GENERIC':
    case 'ERR_JWE_DECRYPTION_FAILED':
    case 'ERR_JWE_INVALID':
    case 'ERR_JWKS_INVALID':
    case 'ERR_JWKS_TIMEOUT':
    default:
      return ['invalid', 'the token is malformed'];
  }
}

/** requiredScopes and requiredClaims -> a check that answers 403 forbidden, or undefined. */
function compileGrants(cfg: JwtConfig): (claims: JWTPayload) => GatehouseError | undefined {
  const scopes = cfg.requiredScopes;
  const claims = Object.entries(cfg.requiredClaims);
  if (scopes.length === 0 && claims.length === 0) return () => undefined;
  const scopeChallenge = {
    'www-authenticate': `Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="${scopes.join(' ')}"`,
  };
  return (payload) => {
    if (scopes.length > 0) {
      const granted = grantedScopes(payload);
      const missing = scopes.filter((s) => !granted.has(s));
      if (missing.length > 0) return new GatehouseError('forbidden', `the token lacks the scope ${missing.join(' ')}`, scopeChallenge);
    }
    for (const [name, wanted] of claims) {
      const actual = payload[name];
      if (actual === wanted || (Array.isArray(actual) && actual.includes(wanted))) continue;
      return new GatehouseError('forbidden', `the token's ${name} claim does not have the required value`, {
        'www-authenticate': `Bearer error="insufficient_scope", error_description="a required claim does not match"`,
      });
    }
    return undefined;
  };
}

/** `scope` (RFC 8693: space-separated) or `scp` (an array, or a string, as Azure AD and Okta send it). */
function grantedScopes(payload: JWTPayload): Set<string> {
  const out = new Set<string>();
  for (const value of [payload.scope, payload.scp]) {
    if (typeof value === 'string') for (const s of value.split(' ')) if (s !== '') out.add(s);
    if (Array.isArray(value)) for (const s of value) if (typeof s === 'string') out.add(s);
  }
  return out;
}

function claimToHeader(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return toHeaderValue(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return toHeaderValue(value.join(','));
  return toHeaderValue(JSON.stringify(value));
}
