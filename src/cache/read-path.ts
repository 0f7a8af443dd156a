import type { CacheConfig } from '../config/schema.js';
import type { Clock } from '../core/clock.js';
import { GatehouseError, UpstreamError, type ErrorCode } from '../core/errors.js';
import { ANSWERED, type Exchange, type ResponseTap, type Stage, type StageOutcome } from '../core/exchange.js';
import { buildUpstreamHeaders, type RequestHeaderPlan } from '../core/forwarding.js';
import { findHeader, lowerName } from '../core/headers.js';
import type { AttemptResult, Policy, Send } from '../core/send.js';
import type { UpstreamClient } from '../core/upstream.js';
import {
  cacheStatus,
  keepMs,
  refreshed,
  requestFacts,
  scanAnswer,
  servesOnError,
  storability,
  toEntry,
  ttlParam,
  usable,
  type AnswerFacts,
  type CachedAnswer,
  type CacheRules,
  type RequestFacts,
} from './entry.js';
import type { CacheStore } from './store.js';

/*
 * The read path of a route (SPEC §13): the cache's lookup is the route's last stage (after
 * authentication and quotas), and a fresh copy is answered right there — no upstream headers
 * built, no deadline timer, no upstream. Everything else is a policy just inside the route
 * deadline: it revalidates stale copies, serves a stale copy when the upstream fails, fills the
 * cache from the answer as it streams to the client (`ex.tap`), and lets identical requests in
 * flight share one upstream request (coalescing).
 */

export type CacheResult = 'hit' | 'miss' | 'stale' | 'revalidated' | 'bypass';

/** What the read path reports; telemetry implements it (metrics and span attributes). */
export interface CacheObserver {
  /** Asked once per route at compile time. */
  forRoute(route: string): RouteCacheObserver;
}

export interface RouteCacheObserver {
  result(ex: Exchange, result: CacheResult): void;
  /** The request got the answer of an identical one in flight. */
  coalesced(ex: Exchange): void;
}

export interface ReadPathDeps {
  readonly clock: Clock;
  /** undefined: coalescing only (no `cache`). */
  readonly store: CacheStore | undefined;
  readonly observer: RouteCacheObserver;
  /** Writes a stored answer to the client, the route's response header rules applied; `body` null for a 304. */
  readonly respond: (ex: Exchange, status: number, headers: readonly string[], body: Buffer | null) => void;
  /** Background refreshes (stale-while-revalidate) go through the upstream dispatch like any call. */
  readonly upstream: UpstreamClient;
  readonly requestHeaders: RequestHeaderPlan;
  /** Path and query sent upstream (the route's rewrite). */
  readonly target: (ex: Exchange) => string;
  /** `rewrite.host`. */
  readonly host: string | undefined;
  readonly timeoutMs: number;
}

export interface ReadPath {
  /** Stages: `first` sets Cache-Status before any other stage may refuse; `lookup` runs last. */
  readonly first: Stage | undefined;
  readonly lookup: Stage | undefined;
  readonly policy: Policy;
}

/** Without a cache, coalesced answers are kept up to this size; a larger one is not shared. */
const COALESCE_MAX_BYTES = 1024 * 1024;
const EMPTY: readonly Buffer[] = [];
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
const SERVER_ERRORS = new Set([500, 502, 503, 504]);
/** The fields a 304 carries over from the stored answer (RFC 9110 §15.4.5). */
const NOT_MODIFIED_FIELDS = new Set(['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified']);
/** The client's own conditions, replaced by the cache's when it revalidates its copy. */
const CONDITIONALS = new Set(['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range']);

/** An answer as coalesced requests share it. */
interface SharedAnswer {
  readonly status: number;
  readonly headers: readonly string[];
  readonly body: Buffer;
}

/** One upstream request that identical requests wait for. */
class Flight {
  settled = false;
  readonly done: Promise<SharedAnswer | Error | undefined>;
  private resolve!: (v: SharedAnswer | Error | undefined) => void;
  constructor(readonly leaderHeaders: readonly string[]) {
    this.done = new Promise((r) => (this.resolve = r));
  }
  /** An answer, a failure to share, or undefined: each waiter sends its own request. */
  settle(v: SharedAnswer | Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve(v);
  }
}

export function compileReadPath(cfg: CacheConfig | undefined, coalesce: boolean, route: string, hasStagesBefore: boolean, deps: ReadPathDeps): ReadPath {
  const { clock, store, observer, respond } = deps;
  const rules: CacheRules = {
    shared: !(cfg?.private ?? false),
    defaultTtl: Math.floor((cfg?.defaultTtl ?? 0) / 1000),
    staleWhileRevalidate: Math.floor((cfg?.staleWhileRevalidate ?? 0) / 1000),
    staleIfError: Math.floor((cfg?.staleIfError ?? 0) / 1000),
  };
  const captureBound = store?.maxEntryBytes ?? COALESCE_MAX_BYTES;
  const flights = new Map<string, Flight>();
  /** URLs being refreshed in the background: one refresh each at a time. */
  const refreshing = new Set<string>();

  /** Per request: what the lookup found, and the answer's capture on its way to the client. */
  class CacheRequest implements ResponseTap {
    readonly key: string;
    request: RequestFacts | undefined = undefined;
    /** A stored copy that is not fresh: revalidated, or served if the upstream fails. */
    entry: CachedAnswer | undefined = undefined;
    bypass = false;
    invalidate = false;
    revalidating = false;
    requestTime = 0;
    statusIndex = -1;
    /** The answer was taken before it reached the client (a 304 to our revalidation, a 5xx). */
    intercepted: { readonly status: number; readonly facts: AnswerFacts | undefined } | undefined = undefined;
    facts: AnswerFacts | undefined = undefined;
    status = 0;
    storing = false;
    chunks: Buffer[] | undefined = undefined;
    bytes = 0;
    flight: Flight | undefined = undefined;
    /** What the client got, for the requests coalesced behind this one. */
    shared: SharedAnswer | undefined = undefined;

    constructor(readonly ex: Exchange) {
      this.key = `${ex.method === 'HEAD' ? 'GET' : ex.method}\n${ex.host}\n${ex.path}${ex.query}`;
    }

    /** Sets `Cache-Status` on the answer, whoever gives it (the upstream, the cache, gatehouse's own error). */
    setStatus(params: string): void {
      const value = cacheStatus(params);
      const ex = this.ex;
      if (this.statusIndex < 0) {
        // the `first` stage put a placeholder there already
        const list = ex.responseHeaders;
        if (list !== undefined) {
          for (let i = list.length - 2; i >= 0; i -= 2) {
            if (list[i] === 'cache-status') {
              this.statusIndex = i + 1;
              break;
            }
          }
        }
        if (this.statusIndex < 0) {
          ex.setResponseHeader('cache-status', value);
          this.statusIndex = ex.responseHeaders!.length - 1;
          return;
        }
      }
      ex.responseHeaders![this.statusIndex] = value;
    }

    intercept(statusCode: number, rawHeaders: readonly Buffer[]): boolean {
      if (statusCode === 304 && this.revalidating) {
        this.intercepted = { status: 304, facts: scanAnswer(strings(rawHeaders)) };
        return true;
      }
      if (this.entry !== undefined && SERVER_ERRORS.has(statusCode) && servesOnError(this.entry, clock.now())) {
        this.intercepted = { status: statusCode, facts: undefined };
        return true;
      }
      return false;
    }

    headers(statusCode: number, rawHeaders: readonly Buffer[]): void {
      const facts = scanAnswer(strings(rawHeaders));
      this.status = statusCode;
      this.facts = facts;
      if (this.invalidate) {
        // RFC 9111 §4.4: a non-error answer to an unsafe method invalidates the stored URL
        if (statusCode < 400 && store !== undefined) store.delete(`GET${this.key.slice(this.key.indexOf('\n'))}`);
        return;
      }
      if (this.bypass) return;
      const ex = this.ex;
      if (store !== undefined && ex.method === 'GET') {
        this.storing =
          storability(rules, statusCode, facts, this.request!) === undefined && (facts.contentLength === undefined || facts.contentLength <= captureBound);
        const fwd = this.entry === undefined ? 'miss' : this.request!.noCache ? 'request' : 'stale';
        this.setStatus(`fwd=${fwd}${statusCode === 200 ? '' : `; fwd-status=${statusCode}`}${this.storing ? '; stored' : ''}`);
        observer.result(ex, 'miss');
        if (!this.storing && this.entry !== undefined && facts.directives['no-store'] !== undefined) store.delete(this.key);
      } else if (store !== undefined) {
        this.setStatus(`fwd=miss${statusCode === 200 ? '' : `; fwd-status=${statusCode}`}`);
        observer.result(ex, 'miss');
      }
      if (this.storing || this.flight !== undefined) this.chunks = [];
    }

    data(chunk: Buffer): void {
      const chunks = this.chunks;
      if (chunks === undefined) return;
      this.bytes += chunk.length;
      if (this.bytes > captureBound) {
        // too large to keep: not stored, and whoever waits for it sends its own request
        this.chunks = undefined;
        this.storing = false;
        this.flight?.settle(undefined);
        return;
      }
      chunks.push(chunk);
    }

    complete(): void {
      const chunks = this.chunks;
      if (chunks === undefined) return;
      this.chunks = undefined;
      // a copy: undici's chunks are views of its socket buffers
      const body = Buffer.concat(chunks, this.bytes);
      const facts = this.facts!;
      this.shared = { status: this.status, headers: facts.kept, body };
      if (this.storing) {
        const entry = toEntry(rules, this.status, facts, body, this.requestTime, clock.now(), varyValues(facts.vary, this.ex.req.rawHeaders));
        store!.put(this.key, entry, keepMs(entry));
      }
    }

    fail(): void {
      this.chunks = undefined;
      this.storing = false;
    }
  }

  /** Serves a stored copy: Age, the route's header rules, a 304 when the client's ETag matches. */
  function serve(st: CacheRequest, entry: CachedAnswer): void {
    const ex = st.ex;
    const age = Math.floor(entry.initialAge + Math.max(0, clock.now() - entry.responseTime) / 1000);
    ex.setResponseHeader('age', String(age));
    const inm = ex.method === 'GET' || ex.method === 'HEAD' ? ex.header('if-none-match') : undefined;
    if (inm !== undefined && entry.etag !== undefined && entry.status === 200 && etagMatches(inm, entry.etag)) {
      respond(ex, 304, notModifiedHeaders(entry.headers), null);
      return;
    }
    respond(ex, entry.status, entry.headers, entry.body);
  }

  function lookup(ex: Exchange): StageOutcome | Promise<StageOutcome> {
    const st = new CacheRequest(ex);
    ex.tap = st;
    const method = ex.method;
    if ((method !== 'GET' && method !== 'HEAD') || ex.body !== null || ex.upgrade !== undefined || ex.header('range') !== undefined) {
      st.bypass = true;
      st.invalidate = !SAFE_METHODS.has(method);
      st.setStatus('fwd=bypass');
      observer.result(ex, 'bypass');
      return undefined;
    }
    st.request = requestFacts(ex.header('cache-control'), ex.header('pragma'), ex.header('authorization') !== undefined);
    const found = store!.get(st.key);
    if (found instanceof Promise) return found.then((variants) => decide(st, variants));
    return decide(st, found);
  }

  function decide(st: CacheRequest, variants: readonly CachedAnswer[] | undefined): StageOutcome {
    const entry = variants === undefined ? undefined : pickVariant(variants, st.ex.req.rawHeaders);
    if (entry === undefined) return undefined;
    const ex = st.ex;
    const u = usable(entry, st.request!, clock.now());
    switch (u.use) {
      case 'fresh':
        st.setStatus(`hit; ${ttlParam(u.ttl)}`);
        observer.result(ex, 'hit');
        serve(st, entry);
        return ANSWERED;
      case 'stale-while-revalidate':
        st.setStatus(`hit; ${ttlParam(u.ttl)}; detail=stale-while-revalidate`);
        observer.result(ex, 'stale');
        serve(st, entry);
        refreshInBackground(st, entry);
        return ANSWERED;
      case 'validate':
        st.entry = entry;
        return undefined;
    }
  }

  /** stale-while-revalidate: one conditional request per URL, through the upstream dispatch, off the client's path. */
  function refreshInBackground(st: CacheRequest, entry: CachedAnswer): void {
    if (refreshing.has(st.key)) return;
    refreshing.add(st.key);
    const ex = st.ex;
    const headers = withConditionals(buildUpstreamHeaders(ex, deps.requestHeaders), entry);
    const requestTime = clock.now();
    const rawHeaders = ex.req.rawHeaders;
    const host = deps.host === 'preserve' ? ex.hostHeader || undefined : deps.host;
    void deps.upstream
      .call({ route, method: 'GET', target: deps.target(ex), headers, body: null, host, timeoutMs: deps.timeoutMs, maxBodyBytes: captureBound + 1 })
      .then((result) => {
        refreshing.delete(st.key);
        if (result.failure !== undefined || result.status >= 500) return;
        const facts = scanAnswer(result.headers);
        const now = clock.now();
        if (result.status === 304) {
          const next = refreshed(rules, entry, facts, requestTime, now);
          store!.put(st.key, next, keepMs(next));
          return;
        }
        if (storability(rules, result.status, facts, st.request!) !== undefined || result.body.length > captureBound) {
          if (facts.directives['no-store'] !== undefined) store!.delete(st.key);
          return;
        }
        const next = toEntry(rules, result.status, facts, result.body, requestTime, now, varyValues(facts.vary, rawHeaders));
        store!.put(st.key, next, keepMs(next));
      });
  }

  /** The upstream failed; a stale copy answers if stale-if-error allows. */
  function serveStale(st: CacheRequest, entry: CachedAnswer, fwdStatus: number | undefined): AttemptResult {
    const ex = st.ex;
    const ttl = entry.lifetime - (entry.initialAge + Math.max(0, clock.now() - entry.responseTime) / 1000);
    st.setStatus(`fwd=stale${fwdStatus === undefined ? '' : `; fwd-status=${fwdStatus}`}; hit; ${ttlParam(ttl)}; detail=stale-if-error`);
    observer.result(ex, 'stale');
    ex.errorCode = undefined;
    serve(st, entry);
    st.shared = { status: entry.status, headers: entry.headers, body: entry.body };
    return { statusCode: entry.status, rawHeaders: EMPTY, committed: true };
  }

  /** The request goes upstream (revalidating a stale copy if there is one). */
  async function forward(st: CacheRequest, next: Send): Promise<AttemptResult> {
    const ex = st.ex;
    const entry = st.entry;
    if (entry !== undefined && (entry.etag !== undefined || entry.lastModified !== undefined)) {
      const base = ex.outHeaderBase;
      const headers = withConditionals(ex.outHeaders.slice(0, base), entry);
      ex.outHeaders = headers;
      ex.outHeaderBase = headers.length;
      st.revalidating = true;
    }
    st.requestTime = clock.now();
    let result: AttemptResult;
    try {
      result = await next(ex);
    } catch (err) {
      if (entry !== undefined && countsAsFailure(err, ex) && servesOnError(entry, clock.now())) return serveStale(st, entry, undefined);
      if (store !== undefined && st.status === 0 && !st.bypass) {
        st.setStatus(entry === undefined ? 'fwd=miss' : 'fwd=stale');
        observer.result(ex, 'miss');
      }
      throw err;
    }
    if (result.committed) return result;
    const taken = st.intercepted;
    if (taken === undefined || entry === undefined) return result;
    if (taken.status !== 304) return serveStale(st, entry, taken.status);
    const renewed = refreshed(rules, entry, taken.facts!, st.requestTime, clock.now());
    store!.put(st.key, renewed, keepMs(renewed));
    st.setStatus(`fwd=${st.request?.noCache === true ? 'request' : 'stale'}; fwd-status=304; stored; ${ttlParam(renewed.lifetime - renewed.initialAge)}`);
    observer.result(ex, 'revalidated');
    serve(st, renewed);
    st.shared = { status: renewed.status, headers: renewed.headers, body: renewed.body };
    return { statusCode: renewed.status, rawHeaders: EMPTY, committed: true };
  }

  /** Waits for an identical request in flight; undefined when this one must go on its own. */
  async function follow(st: CacheRequest, flight: Flight): Promise<AttemptResult | undefined> {
    const ex = st.ex;
    const signal = ex.signal;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new UpstreamError(ex.cancelled ?? 'aborted', 'the request was cancelled while it waited for an identical one'));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    let got: SharedAnswer | Error | undefined;
    try {
      got = await Promise.race([flight.done, aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort!);
    }
    if (got === undefined) return undefined;
    if (got instanceof Error) {
      if (store !== undefined && !st.bypass) {
        st.setStatus(`fwd=miss; collapsed`);
        observer.result(ex, 'miss');
      }
      observer.coalesced(ex);
      throw got;
    }
    if (!sameVariant(got.headers, flight.leaderHeaders, ex.req.rawHeaders)) return undefined;
    if (store !== undefined) {
      st.setStatus(`fwd=miss${got.status === 200 ? '' : `; fwd-status=${got.status}`}; collapsed`);
      observer.result(ex, 'miss');
    }
    observer.coalesced(ex);
    respond(ex, got.status, got.headers, got.body);
    return { statusCode: got.status, rawHeaders: EMPTY, committed: true };
  }

  const policy: Policy = (next) =>
    async function withReadPath(ex: Exchange): Promise<AttemptResult> {
      let st = ex.tap as CacheRequest | undefined;
      if (st === undefined) {
        // coalescing without a cache: no lookup stage made the request's state
        st = new CacheRequest(ex);
        ex.tap = st;
        if (ex.method !== 'GET' && ex.method !== 'HEAD') st.bypass = true;
      }
      if (st.bypass || !coalesce || ex.body !== null) return forward(st, next);
      const key = coalesceKey(st.key, ex);
      const flight = flights.get(key);
      if (flight !== undefined) {
        const shared = await follow(st, flight);
        if (shared !== undefined) return shared;
        return forward(st, next);
      }
      const mine = new Flight(ex.req.rawHeaders);
      st.flight = mine;
      flights.set(key, mine);
      try {
        const result = await forward(st, next);
        mine.settle(st.shared);
        return result;
      } catch (err) {
        // a failure of the upstream is shared; this client leaving or its deadline is not
        mine.settle(ex.cancelled === undefined && err instanceof Error ? err : undefined);
        throw err;
      } finally {
        mine.settle(undefined);
        if (flights.get(key) === mine) flights.delete(key);
      }
    };

  const first: Stage | undefined =
    store !== undefined && hasStagesBefore
      ? (ex) => {
          // refused before the lookup (401, 429): the cache was not consulted
          ex.setResponseHeader('cache-status', cacheStatus('fwd=bypass; detail=refused'));
          return undefined;
        }
      : undefined;
  return { first, lookup: store === undefined ? undefined : lookup, policy };
}

/**
 * gatehouse's own failures count as the upstream failing (SPEC §13): circuit_open, bad_gateway,
 * upstream_timeout, and the other refusals that say the upstream cannot be reached now.
 */
const UPSTREAM_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['circuit_open', 'bad_gateway', 'upstream_timeout', 'overloaded', 'no_healthy_upstream', 'auth_unavailable']);

function countsAsFailure(err: unknown, ex: Exchange): boolean {
  if (ex.cancelled === 'aborted') return false; // the client left: nobody to answer
  if (err instanceof UpstreamError) return err.kind !== 'aborted';
  return err instanceof GatehouseError && UPSTREAM_REFUSALS.has(err.code);
}

const strings = (raw: readonly Buffer[]): string[] => {
  const out = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw[i]!.toString('latin1');
  return out;
};

/** The request's values of the `Vary` fields ('' for absent). */
function varyValues(vary: readonly string[], rawHeaders: readonly string[]): string[] {
  return vary.map((f) => findHeader(rawHeaders, f) ?? '');
}

/** The newest stored variant whose Vary values are the request's. */
function pickVariant(variants: readonly CachedAnswer[], rawHeaders: readonly string[]): CachedAnswer | undefined {
  for (let i = variants.length - 1; i >= 0; i--) {
    const v = variants[i]!;
    let same = true;
    for (let j = 0; j < v.vary.length && same; j++) same = (findHeader(rawHeaders, v.vary[j]!) ?? '') === v.varyValues[j];
    if (same) return v;
  }
  return undefined;
}

/** A shared answer fits a waiter when the fields it varies on have the leader's values. */
function sameVariant(answerHeaders: readonly string[], leader: readonly string[], mine: readonly string[]): boolean {
  for (let i = 0; i < answerHeaders.length; i += 2) {
    if (lowerName(answerHeaders[i]!) !== 'vary') continue;
    for (const f of answerHeaders[i + 1]!.split(',')) {
      const name = f.trim().toLowerCase();
      if (name === '*') return false;
      if (name !== '' && findHeader(leader, name) !== findHeader(mine, name)) return false;
    }
  }
  return true;
}

/** Identical requests: same URL, and the same credentials (they may decide what the answer holds). */
function coalesceKey(urlKey: string, ex: Exchange): string {
  const auth = ex.header('authorization');
  const cookie = ex.header('cookie');
  return auth === undefined && cookie === undefined ? urlKey : `${urlKey}\n${auth ?? ''}\n${cookie ?? ''}`;
}

/** The upstream headers with the client's conditions replaced by the stored copy's validators. */
function withConditionals(headers: readonly string[], entry: CachedAnswer): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (!CONDITIONALS.has(lowerName(headers[i]!))) out.push(headers[i]!, headers[i + 1]!);
  }
  if (entry.etag !== undefined) out.push('if-none-match', entry.etag);
  if (entry.lastModified !== undefined) out.push('if-modified-since', entry.lastModified);
  return out;
}

/** Weak comparison (RFC 9110 §13.1.2): `W/` prefixes do not matter; `*` matches. */
function etagMatches(ifNoneMatch: string, etag: string): boolean {
  const bare = etag.startsWith('W/') ? etag.slice(2) : etag;
  for (const part of ifNoneMatch.split(',')) {
    const t = part.trim();
    if (t === '*' || (t.startsWith('W/') ? t.slice(2) : t) === bare) return true;
  }
  return false;
}

function notModifiedHeaders(headers: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (NOT_MODIFIED_FIELDS.has(lowerName(headers[i]!))) out.push(headers[i]!, headers[i + 1]!);
  return out;
}
