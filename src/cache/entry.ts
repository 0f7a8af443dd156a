import { isHopByHop, lowerName } from '../core/headers.js';
import { isEtagUsable, parseDirectives, parseHttpDate, type Directives } from './directives.js';

/*
 * RFC 9111 as pure functions over plain numbers (wall-clock ms in, seconds in the entry): what
 * may be stored, how fresh a stored answer is, what a 304 changes. The read path (read-path.ts)
 * owns the clock, the stores and the sockets.
 */

/** One stored answer (one variant of a URL when the answer has `Vary`). */
export interface CachedAnswer {
  readonly status: number;
  /** Response headers as stored, flat [name, value, ...]: no hop-by-hop fields, no Age. */
  readonly headers: readonly string[];
  readonly body: Buffer;
  /** Wall-clock ms the answer arrived (response_time, RFC 9111 §4.2.3). */
  readonly responseTime: number;
  /** Its age in seconds when it arrived (corrected_initial_age). */
  readonly initialAge: number;
  /** Freshness lifetime in seconds. */
  readonly lifetime: number;
  /** Seconds past its lifetime it may be served while it is refreshed (RFC 5861). */
  readonly staleWhileRevalidate: number;
  /** Seconds past its lifetime it may be served when the upstream fails (RFC 5861). */
  readonly staleIfError: number;
  /** `must-revalidate` (or `proxy-revalidate` in a shared cache): never served stale without the upstream's word. */
  readonly mustRevalidate: boolean;
  /** `no-cache`: never served without revalidating first. */
  readonly noCache: boolean;
  readonly etag: string | undefined;
  readonly lastModified: string | undefined;
  /** The `Vary` field names, lowercase; empty when the answer does not vary. */
  readonly vary: readonly string[];
  /** The request's values of the `vary` fields when it was stored ('' for an absent field). */
  readonly varyValues: readonly string[];
}

/** What the route's cache config says, in seconds. */
export interface CacheRules {
  readonly shared: boolean;
  readonly defaultTtl: number;
  readonly staleWhileRevalidate: number;
  readonly staleIfError: number;
}

/** The fields of an answer that caching reads, found in one pass. */
export interface AnswerFacts {
  readonly directives: Directives;
  readonly date: number | undefined;
  readonly expires: string | undefined;
  readonly age: number;
  readonly etag: string | undefined;
  readonly lastModified: string | undefined;
  /** Lowercase names; ['*'] for `Vary: *`. */
  readonly vary: readonly string[];
  readonly setCookie: boolean;
  readonly contentLength: number | undefined;
  /** The headers worth storing (no hop-by-hop fields, no Age), flat. */
  readonly kept: string[];
}

/** RFC 9110 §15.1: the status codes that are cacheable by default (heuristically cacheable). */
const CACHEABLE_STATUS = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);

/**
 * Fields no stored copy keeps: hop-by-hop ones (RFC 9111 §3.1), `Age` (recomputed on every
 * answer), `Content-Length` (set from the stored body when it is served).
 */
function dropped(lower: string): boolean {
  return isHopByHop(lower) || lower === 'age' || lower === 'content-length' || lower === 'x-request-id' || lower === 'cache-status';
}

export function scanAnswer(raw: readonly string[]): AnswerFacts {
  let cacheControl: string | undefined;
  let date: string | undefined;
  let expires: string | undefined;
  let age = 0;
  let etag: string | undefined;
  let lastModified: string | undefined;
  let vary: string[] = [];
  let setCookie = false;
  let contentLength: number | undefined;
  const kept: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = lowerName(name);
    switch (lower) {
      case 'cache-control':
        cacheControl = cacheControl === undefined ? value : `${cacheControl}, ${value}`;
        break;
      case 'date':
        date = value;
        break;
      case 'expires':
        expires = value;
        break;
      case 'age': {
        const n = Number(value.trim());
        if (Number.isInteger(n) && n >= 0) age = n;
        break;
      }
      case 'etag':
        etag = value.trim();
        break;
      case 'last-modified':
        lastModified = value;
        break;
      case 'vary':
        for (const v of value.split(',')) {
          const f = v.trim().toLowerCase();
          if (f !== '') vary.push(f);
        }
        break;
      case 'set-cookie':
        setCookie = true;
        break;
      case 'content-length':
        contentLength = Number(value);
        break;
      case 'connection':
        connection = value;
        break;
    }
    if (!dropped(lower)) kept.push(name, value);
  }
  if (vary.includes('*')) vary = ['*'];
  if (connection !== undefined) {
    // fields the upstream named in Connection are hop-by-hop too
    const named = new Set(connection.split(',').map((t) => t.trim().toLowerCase()));
    for (let i = kept.length - 2; i >= 0; i -= 2) if (named.has(kept[i]!.toLowerCase())) kept.splice(i, 2);
  }
  return {
    directives: parseDirectives(cacheControl),
    date: parseHttpDate(date),
    expires,
    age,
    etag: etag !== undefined && isEtagUsable(etag) ? etag : undefined,
    lastModified: parseHttpDate(lastModified) === undefined ? undefined : lastModified,
    vary,
    setCookie,
    contentLength,
    kept,
  };
}

/** What a request says about caching. */
export interface RequestFacts {
  readonly directives: Directives;
  /** `Cache-Control: no-cache`, `max-age=0` or `Pragma: no-cache` (without Cache-Control): validate first. */
  readonly noCache: boolean;
  readonly authorization: boolean;
}

export function requestFacts(cacheControl: string | undefined, pragma: string | undefined, authorization: boolean): RequestFacts {
  const directives = parseDirectives(cacheControl);
  const noCache =
    directives['no-cache'] !== undefined || directives['max-age'] === 0 || (cacheControl === undefined && pragma !== undefined && /no-cache/i.test(pragma));
  return { directives, noCache, authorization };
}

export type NotStored = 'method' | 'status' | 'no-store' | 'private' | 'authorization' | 'set-cookie' | 'vary' | 'no-freshness';

/**
 * Whether an answer may be stored (RFC 9111 §3, §3.5 for a shared cache), and if so for how
 * long it is fresh. Conservative where the RFC allows a choice: a shared cache stores no answer
 * that sets a cookie and no `private` one (qualified or not).
 */
export function storability(rules: CacheRules, status: number, answer: AnswerFacts, request: RequestFacts): NotStored | undefined {
  if (!CACHEABLE_STATUS.has(status)) return 'status';
  const d = answer.directives;
  if (d['no-store'] !== undefined || request.directives['no-store'] !== undefined) return 'no-store';
  if (answer.vary[0] === '*') return 'vary';
  if (rules.shared) {
    if (d.private !== undefined) return 'private';
    // §3.5: an answer to an authorized request is for that requester, unless it says otherwise
    if (request.authorization && d.public === undefined && d['s-maxage'] === undefined && d['must-revalidate'] === undefined) return 'authorization';
    if (answer.setCookie) return 'set-cookie';
  }
  // nothing it could ever be used for: never fresh, no validator, no stale window
  if (
    lifetimeOf(rules, answer, 0) === 0 &&
    answer.etag === undefined &&
    answer.lastModified === undefined &&
    (d['stale-if-error'] ?? rules.staleIfError) === 0 &&
    (d['stale-while-revalidate'] ?? rules.staleWhileRevalidate) === 0
  ) {
    return 'no-freshness';
  }
  return undefined;
}

/** Freshness lifetime in seconds (§4.2.1): s-maxage (shared), max-age, Expires − Date, else the route's default. */
export function lifetimeOf(rules: CacheRules, answer: AnswerFacts, responseTime: number): number {
  const d = answer.directives;
  if (d['no-cache'] !== undefined) return 0;
  if (rules.shared && d['s-maxage'] !== undefined) return d['s-maxage'];
  if (d['max-age'] !== undefined) return d['max-age'];
  if (answer.expires !== undefined) {
    const expires = parseHttpDate(answer.expires);
    if (expires === undefined) return 0; // an invalid Expires means "already expired" (§5.3)
    return Math.max(0, Math.floor((expires - (answer.date ?? responseTime)) / 1000));
  }
  return rules.defaultTtl;
}

/** The stored form of an answer, with its age bookkeeping (§4.2.3). */
export function toEntry(
  rules: CacheRules,
  status: number,
  answer: AnswerFacts,
  body: Buffer,
  requestTime: number,
  responseTime: number,
  varyValues: readonly string[],
): CachedAnswer {
  const d = answer.directives;
  const apparentAge = Math.max(0, (responseTime - (answer.date ?? responseTime)) / 1000);
  const correctedAge = answer.age + (responseTime - requestTime) / 1000;
  const mustRevalidate = d['must-revalidate'] !== undefined || (rules.shared && d['proxy-revalidate'] !== undefined);
  return {
    status,
    headers: answer.kept,
    body,
    responseTime,
    initialAge: Math.max(apparentAge, correctedAge),
    lifetime: lifetimeOf(rules, answer, responseTime),
    // the answer's own word beats the route's default; must-revalidate silences the defaults
    staleWhileRevalidate: d['stale-while-revalidate'] ?? (mustRevalidate ? 0 : rules.staleWhileRevalidate),
    staleIfError: d['stale-if-error'] ?? (mustRevalidate ? 0 : rules.staleIfError),
    mustRevalidate,
    noCache: d['no-cache'] !== undefined,
    etag: answer.etag,
    lastModified: answer.lastModified,
    vary: answer.vary,
    varyValues,
  };
}

/** current_age in seconds (§4.2.3). */
export function ageOf(entry: CachedAnswer, nowMs: number): number {
  return entry.initialAge + Math.max(0, nowMs - entry.responseTime) / 1000;
}

export type Usable =
  /** fresh: serve it; `ttl` seconds of freshness left */
  | { readonly use: 'fresh'; readonly ttl: number }
  /** stale but within stale-while-revalidate: serve it, refresh in the background */
  | { readonly use: 'stale-while-revalidate'; readonly ttl: number }
  /** ask the upstream (conditionally when the entry has validators) */
  | { readonly use: 'validate'; readonly ttl: number };

/** What a stored answer is good for, for this request, now. */
export function usable(entry: CachedAnswer, request: RequestFacts, nowMs: number): Usable {
  const age = ageOf(entry, nowMs);
  const ttl = entry.lifetime - age;
  if (request.noCache || entry.noCache) return { use: 'validate', ttl };
  const rd = request.directives;
  const maxAge = rd['max-age'];
  const minFresh = rd['min-fresh'] ?? 0;
  if (ttl > minFresh && (maxAge === undefined || age <= maxAge)) return { use: 'fresh', ttl };
  if (ttl <= 0 && !entry.mustRevalidate && maxAge === undefined && -ttl <= entry.staleWhileRevalidate) return { use: 'stale-while-revalidate', ttl };
  return { use: 'validate', ttl };
}

/** Whether a stale copy may answer for a failed upstream (RFC 5861 stale-if-error). */
export function servesOnError(entry: CachedAnswer, nowMs: number): boolean {
  const ttl = entry.lifetime - ageOf(entry, nowMs);
  return -ttl <= entry.staleIfError;
}

/** How long a store should keep the entry, in ms: its lifetime and stale windows (an hour longer when it can be revalidated). */
export function keepMs(entry: CachedAnswer): number {
  const stale = Math.max(entry.staleWhileRevalidate, entry.staleIfError, entry.etag !== undefined || entry.lastModified !== undefined ? 3600 : 0);
  return Math.max(1, Math.ceil((entry.lifetime - entry.initialAge + stale) * 1000));
}

/**
 * A 304 refreshes a stored answer (§4.3.4): its header fields replace the stored ones of the same
 * name (Content-Length excepted), and freshness is computed anew from the merged fields.
 */
export function refreshed(rules: CacheRules, entry: CachedAnswer, notModified: AnswerFacts, requestTime: number, responseTime: number): CachedAnswer {
  const replaced = new Set<string>();
  for (let i = 0; i < notModified.kept.length; i += 2) replaced.add(notModified.kept[i]!.toLowerCase());
  replaced.delete('content-length');
  const merged: string[] = [];
  for (let i = 0; i < entry.headers.length; i += 2) {
    if (!replaced.has(entry.headers[i]!.toLowerCase())) merged.push(entry.headers[i]!, entry.headers[i + 1]!);
  }
  for (let i = 0; i < notModified.kept.length; i += 2) {
    if (notModified.kept[i]!.toLowerCase() !== 'content-length') merged.push(notModified.kept[i]!, notModified.kept[i + 1]!);
  }
  const facts = scanAnswer(merged);
  return toEntry(rules, entry.status, { ...facts, age: notModified.age, date: notModified.date ?? facts.date }, entry.body, requestTime, responseTime, entry.varyValues);
}

/** The approximate memory an entry holds, for the memory store's bound. */
export function entryBytes(entry: CachedAnswer): number {
  let n = 256 + entry.body.length;
  for (const h of entry.headers) n += h.length + 16;
  return n;
}

/** `Cache-Status` (RFC 9211) of the gatehouse cache: `gatehouse; <params>`. */
export const cacheStatus = (params: string): string => `gatehouse; ${params}`;

/** A `ttl=` parameter: whole seconds (toward zero), negative when stale. */
export const ttlParam = (ttl: number): string => `ttl=${Math.trunc(ttl) || 0}`;
