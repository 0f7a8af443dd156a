import type { BlockList } from 'node:net';
import type { Exchange } from '../core/exchange.js';
import { connectionTokens, isHopByHop, lowerName } from '../core/headers.js';

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

const REQUEST_ID = /^[A-Za-z0-9._:+/=-]{1,200}$/;

/** A client-sent x-request-id is kept when it is short and plain, else replaced (hono's rule). */
export function acceptRequestId(value: string | undefined): value is string {
  return value !== undefined && REQUEST_ID.test(value);
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

/**
 * Writes an answer the proxy holds (a cached copy, an answer shared by coalesced requests) with
 * the same header rules as an upstream's: the route's strip and `set`, x-request-id, what stages
 * added (Cache-Status, RateLimit, ...). Content-Length comes from the body; `body` null: no body
 * (a 304). The stored headers have no hop-by-hop fields already.
 */
export function storedResponder(plan: ResponseHeaderPlan, isDraining: () => boolean) {
  return function respondStored(ex: Exchange, status: number, headers: readonly string[], body: Buffer | null): void {
    const res = ex.res;
    if (ex.deadlineTimer !== undefined) {
      clearTimeout(ex.deadlineTimer);
      ex.deadlineTimer = undefined;
    }
    if (res.headersSent || res.destroyed) return;
    ex.status = status;
    const out: string[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      if (!plan.strip.has(lowerName(headers[i]!))) out.push(headers[i]!, headers[i + 1]!);
    }
    for (let i = 0; i < plan.set.length; i++) out.push(plan.set[i]!);
    out.push('x-request-id', ex.requestId);
    if (ex.responseHeaders !== undefined) for (const h of ex.responseHeaders) out.push(h);
    if (body !== null) out.push('content-length', String(body.length));
    if (isDraining()) out.push('connection', 'close');
    res.writeHead(status, out);
    if (body === null || ex.method === 'HEAD') res.end();
    else res.end(body);
  };
}
