import type { BlockList } from 'node:net';
import type { Exchange } from './exchange.js';

/**
 * Header hygiene on the hot path: hop-by-hop headers (RFC 9110 §7.6.1) and those named in
 * `Connection` never cross the proxy; headers gatehouse asserts are stripped from the client's
 * copy before the configured `set` runs, so a client cannot forge them.
 */

const LOWER_CACHE = new Map<string, string>();
const LOWER_CACHE_MAX = 512;

/** Lowercases a header name, remembering the common spellings (undici's lookup-table idea). */
export function lowerName(name: string): string {
  let lower = LOWER_CACHE.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (LOWER_CACHE.size < LOWER_CACHE_MAX) LOWER_CACHE.set(name, lower);
  }
  return lower;
}

export function isHopByHop(lower: string): boolean {
  switch (lower) {
    case 'connection':
    case 'keep-alive':
    case 'proxy-connection':
    case 'proxy-authenticate':
    case 'proxy-authorization':
    case 'te':
    case 'trailer':
    case 'transfer-encoding':
    case 'upgrade':
      return true;
    default:
      return false;
  }
}

/** Names listed in a `Connection` header, other than the usual close/keep-alive. */
export function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined; // nearly every request
  let tokens: Set<string> | undefined;
  for (const raw of value.split(',')) {
    const t = raw.trim().toLowerCase();
    if (t === '' || t === 'close' || t === 'keep-alive') continue;
    (tokens ??= new Set()).add(t);
  }
  return tokens;
}

/** What the first pass over the request headers learned; the route is not known yet. */
export interface RequestFacts {
  host: string | undefined;
  /** How many Host fields came: more than one is refused. */
  hostCount: number;
  requestId: string | undefined;
  forwardedFor: string | undefined;
  forwardedProto: string | undefined;
  forwardedHost: string | undefined;
  traceparent: string | undefined;
  tracestate: string | undefined;
  connection: string | undefined;
  contentLength: string | undefined;
  transferEncoding: string | undefined;
}

/** One pass over the raw request headers for the few gatehouse needs before routing. */
export function scanRequestHeaders(raw: readonly string[]): RequestFacts {
  const facts: RequestFacts = {
    host: undefined,
    hostCount: 0,
    requestId: undefined,
    forwardedFor: undefined,
    forwardedProto: undefined,
    forwardedHost: undefined,
    traceparent: undefined,
    tracestate: undefined,
    connection: undefined,
    contentLength: undefined,
    transferEncoding: undefined,
  };
  for (let i = 0; i < raw.length; i += 2) {
    const value = raw[i + 1]!;
    switch (lowerName(raw[i]!)) {
      case 'host':
        facts.host ??= value;
        facts.hostCount++;
        break;
      case 'x-request-id':
        facts.requestId ??= value;
        break;
      case 'x-forwarded-for':
        facts.forwardedFor = facts.forwardedFor === undefined ? value : `${facts.forwardedFor}, ${value}`;
        break;
      case 'x-forwarded-proto':
        facts.forwardedProto ??= value;
        break;
      case 'x-forwarded-host':
        facts.forwardedHost ??= value;
        break;
      case 'traceparent':
        facts.traceparent ??= value;
        break;
      case 'tracestate':
        facts.tracestate ??= value;
        break;
      case 'connection':
        facts.connection ??= value;
        break;
      case 'content-length':
        facts.contentLength ??= value;
        break;
      case 'transfer-encoding':
        // every field: `Transfer-Encoding: gzip` + `Transfer-Encoding: chunked` is `gzip, chunked`
        facts.transferEncoding = facts.transferEncoding === undefined ? value : `${facts.transferEncoding}, ${value}`;
        break;
    }
  }
  return facts;
}

/**
 * The client's address for quotas and logs: the peer, or, when the peer is a trusted proxy, the
 * right-most address of X-Forwarded-For that is not itself trusted.
 */
export function clientAddress(peer: string, forwardedFor: string | undefined, trusted: BlockList | undefined): string {
  if (trusted === undefined || forwardedFor === undefined || !isTrusted(trusted, peer)) return peer;
  const hops = forwardedFor.split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!.trim();
    if (hop !== '' && !isTrusted(trusted, hop)) return hop;
  }
  return hops[0]!.trim() || peer;
}

export function isTrusted(trusted: BlockList, address: string): boolean {
  const ip = address.startsWith('::ffff:') ? address.slice(7) : address;
  return trusted.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
}

/** How a route shapes the request headers; built once in compile(). */
export interface RequestHeaderPlan {
  /** Lowercase names dropped from the client's request: `remove`, the names `set` replaces, and headers gatehouse asserts. */
  readonly strip: ReadonlySet<string>;
  /**
   * `limits.allowUnderscoreHeaders`: false drops client header names containing `_` (nginx's
   * default), so `x_user_id` cannot shadow the `x-user-id` gatehouse asserts in frameworks that
   * fold `_` and `-` together (CGI, Django, Rack).
   */
  readonly allowUnderscores: boolean;
  /** Configured `set`, flat: [name, value, ...]. */
  readonly set: readonly string[];
  /** When tracing is on, the incoming traceparent/tracestate are replaced by the client span's. */
  readonly replaceTraceContext: boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._:+/=-]{1,200}$/;

/** A client-sent x-request-id is kept when it is short and plain, else replaced (hono's rule). */
export function acceptRequestId(value: string | undefined): value is string {
  return value !== undefined && REQUEST_ID.test(value);
}

/**
 * The upstream request's headers as a flat list for undici (each attempt appends its Host): the client's minus hop-by-hop and
 * stripped names, then X-Forwarded-*, x-request-id, the route's `set` and what stages added.
 */
export function buildUpstreamHeaders(
  ex: Exchange,
  plan: RequestHeaderPlan,
  facts: RequestFacts,
  proto: string,
  peer: string,
): string[] {
  const raw = ex.req.rawHeaders;
  const dropNamed = connectionTokens(facts.connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = lowerName(name);
    switch (lower) {
      case 'host':
      case 'x-request-id':
      case 'x-forwarded-for':
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
        continue; // set below, from what gatehouse knows and trusts
      case 'expect':
        continue; // node:http already answered `100 Continue`; undici refuses the header
      case 'traceparent':
      case 'tracestate':
        if (plan.replaceTraceContext) continue;
        break;
      default:
        if (isHopByHop(lower) || plan.strip.has(lower) || dropNamed?.has(lower)) continue;
        if (!plan.allowUnderscores && lower.includes('_')) continue;
    }
    out.push(name, raw[i + 1]!);
  }
  out.push(
    'x-forwarded-for',
    ex.forwardedFor === undefined ? peer : `${ex.forwardedFor}, ${peer}`,
    'x-forwarded-proto',
    ex.forwardedProto ?? proto,
    'x-request-id',
    ex.requestId,
  );
  const forwardedHost = ex.forwardedHost ?? facts.host;
  if (forwardedHost !== undefined) out.push('x-forwarded-host', forwardedHost);
  for (let i = 0; i < plan.set.length; i++) out.push(plan.set[i]!);
  if (ex.upstreamHeaders !== undefined) for (const h of ex.upstreamHeaders) out.push(h);
  return out;
}

/** How a route shapes the response headers; built once in compile(). */
export interface ResponseHeaderPlan {
  readonly strip: ReadonlySet<string>;
  readonly set: readonly string[];
}

/**
 * The client response's headers from undici's raw list (Buffers): hop-by-hop and stripped names
 * dropped, then the route's `set`, x-request-id, and what stages added (RateLimit, ...).
 */
export function buildResponseHeaders(ex: Exchange, plan: ResponseHeaderPlan, raw: readonly Buffer[], closing: boolean): string[] {
  const out: string[] = [];
  let dropNamed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const lower = lowerName(name);
    if (lower === 'connection') {
      dropNamed = connectionTokens(raw[i + 1]!.toString('latin1'));
      continue;
    }
    if (isHopByHop(lower) || lower === 'x-request-id' || plan.strip.has(lower)) continue;
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  if (dropNamed !== undefined) {
    for (let i = out.length - 2; i >= 0; i -= 2) {
      if (dropNamed.has(out[i]!.toLowerCase())) out.splice(i, 2);
    }
  }
  for (let i = 0; i < plan.set.length; i++) out.push(plan.set[i]!);
  out.push('x-request-id', ex.requestId);
  if (ex.responseHeaders !== undefined) for (const h of ex.responseHeaders) out.push(h);
  if (closing) out.push('connection', 'close');
  return out;
}
