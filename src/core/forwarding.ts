import type { Exchange } from './exchange.js';
import { connectionTokens, isHopByHop, lowerName } from './headers.js';

/*
 * The headers an upstream gets for a client's request, built one way for every path to it: a
 * proxied attempt, a WebSocket upgrade, a webhook stored for later delivery (SPEC §3, §7).
 */

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

/**
 * The upstream request's headers as a flat list for undici (each attempt appends its Host): the client's minus hop-by-hop and
 * stripped names, then X-Forwarded-*, x-request-id, the route's `set` and what stages added.
 */
export function buildUpstreamHeaders(ex: Exchange, plan: RequestHeaderPlan): string[] {
  const raw = ex.req.rawHeaders;
  const dropNamed = connectionTokens(ex.facts?.connection);
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
      case 'forwarded':
        if (!ex.trustedPeer) continue; // RFC 7239: only a trusted proxy's
        break;
      default:
        if (isHopByHop(lower) || plan.strip.has(lower) || dropNamed?.has(lower)) continue;
        // X-Forwarded-Port, -Prefix, -Server...: facts a client could invent, kept only from a trusted proxy
        if (!ex.trustedPeer && lower.startsWith('x-forwarded-')) continue;
        if (!plan.allowUnderscores && lower.includes('_')) continue;
    }
    out.push(name, raw[i + 1]!);
  }
  const peer = ex.peer;
  out.push(
    'x-forwarded-for',
    ex.forwardedFor === undefined ? peer : `${ex.forwardedFor}, ${peer}`,
    'x-forwarded-proto',
    ex.forwardedProto ?? ((ex.req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http'),
    'x-request-id',
    ex.requestId,
  );
  const forwardedHost = ex.forwardedHost ?? (ex.hostHeader === '' ? undefined : ex.hostHeader);
  if (forwardedHost !== undefined) out.push('x-forwarded-host', forwardedHost);
  for (let i = 0; i < plan.set.length; i++) out.push(plan.set[i]!);
  if (ex.upstreamHeaders !== undefined) for (const h of ex.upstreamHeaders) out.push(h);
  return out;
}
