import type { BlockList } from 'node:net';
import type { Exchange } from '../core/exchange.js';
import { connectionTokens, isHopByHop, lowerName, type RequestFacts } from '../core/headers.js';

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
