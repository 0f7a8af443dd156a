import { SpanKind, SpanStatusCode, trace, type Attributes, type Span, type SpanContext } from '@opentelemetry/api';
import type { Exchange } from '../core/exchange.js';
import { ATTR } from '../core/names.js';
import type { UpstreamCall } from '../core/upstream.js';
import type { Tracing } from './tracing.js';

/**
 * The HTTP semantic-convention spans (stable HTTP conventions): one SERVER span per request
 * (`{method} {http.route}`), one CLIENT span per upstream attempt (`{method}`), the client
 * span's context sent upstream.
 */

export function startServerSpan(
  tracing: Tracing,
  ex: Exchange,
  traceparent: string | undefined,
  tracestate: string | undefined,
  scheme: string,
): void {
  const req = ex.req;
  const parent = trace.getSpanContext(tracing.extract(traceparent, tracestate, req.rawHeaders));
  const span = tracing.tracer.start(
    ex.method,
    SpanKind.SERVER,
    {
      [ATTR.method]: ex.method,
      [ATTR.urlPath]: ex.path,
      [ATTR.urlScheme]: scheme,
      [ATTR.urlQuery]: ex.query === '' ? undefined : redactQuery(ex.query.slice(1)),
      [ATTR.serverAddress]: ex.host || undefined,
      [ATTR.serverPort]: req.socket.localPort,
      [ATTR.clientAddress]: ex.clientIp || undefined,
      [ATTR.peerAddress]: req.socket.remoteAddress,
      [ATTR.userAgent]: ex.header('user-agent'),
      [ATTR.protocolVersion]: req.httpVersion,
      [ATTR.requestId]: ex.requestId,
    },
    parent,
  );
  ex.span = span;
  ex.traceId = span.spanContext().traceId;
}

/** Names the span after the route once it is known; SPEC §8 `{method} {http.route}`. */
export function setServerRoute(ex: Exchange): void {
  const span = ex.span;
  if (span === undefined || ex.route === undefined) return;
  span.updateName(`${ex.method} ${ex.route.httpRoute}`);
  span.setAttribute(ATTR.route, ex.route.httpRoute);
  span.setAttribute(ATTR.gatehouseRoute, ex.route.name);
  span.setAttribute(ATTR.gatehouseUpstream, ex.route.upstream);
}

export function endServerSpan(ex: Exchange, status: number): void {
  const span = ex.span;
  if (span === undefined) return;
  if (status > 0) span.setAttribute(ATTR.status, status);
  if (ex.errorCode !== undefined || status >= 500) {
    span.setAttribute(ATTR.errorType, ex.errorCode ?? String(status));
    span.setStatus({ code: SpanStatusCode.ERROR, message: ex.errorCode });
  }
  if (ex.note !== undefined) span.addEvent('gatehouse.note', { message: ex.note });
  span.end();
}

/** The endpoint an attempt goes to, as the upstream runtime has it. */
export interface ClientTarget {
  readonly scheme: string;
  readonly hostname: string;
  readonly port: number;
  /** `host[:port]` of the endpoint URL: never userinfo. */
  readonly authority: string;
  /** The endpoint's IP when it is named by one; undefined for a host name (then the socket tells). */
  readonly peerAddress: string | undefined;
}

/** A proxied attempt's CLIENT span, a child of the request's SERVER span; `path` is the target sent (path and query). */
export function startClientSpan(tracing: Tracing, ex: Exchange, target: ClientTarget, path: string): Span {
  const attributes = clientAttributes(ex.method, target, path, ex.route?.name, ex.route?.upstream, ex.attempts - 1);
  return tracing.tracer.start(ex.method, SpanKind.CLIENT, attributes, ex.span?.spanContext());
}

/**
 * The CLIENT span of a call no client waits on (a delivery): a root span, linked to the trace
 * context that caused it (the webhook intake's SERVER span, say).
 */
export function startCallSpan(tracing: Tracing, call: UpstreamCall, upstream: string, target: ClientTarget, path: string): Span {
  const link = parseTraceparent(call.link);
  const attributes = clientAttributes(call.method, target, path, call.route, upstream, call.resends ?? 0);
  if (call.attributes !== undefined) Object.assign(attributes, call.attributes);
  const links = link === undefined ? undefined : [{ context: link, attributes: { 'gatehouse.link': 'cause' } }];
  return tracing.tracer.start(call.method, SpanKind.CLIENT, attributes, undefined, links);
}

/** The semconv attributes of a CLIENT span; `url.full` with secret-looking query values redacted. */
function clientAttributes(method: string, target: ClientTarget, path: string, route: string | undefined, upstream: string | undefined, resends: number): Attributes {
  const q = path.indexOf('?');
  const urlPath = q < 0 ? path : path.slice(0, q);
  return {
    [ATTR.method]: method,
    [ATTR.urlFull]: `${target.scheme}://${target.authority}${q < 0 ? path : `${urlPath}?${redactQuery(path.slice(q + 1))}`}`,
    [ATTR.urlPath]: urlPath,
    [ATTR.urlScheme]: target.scheme,
    [ATTR.serverAddress]: target.hostname,
    [ATTR.serverPort]: target.port,
    [ATTR.peerAddress]: target.peerAddress,
    [ATTR.gatehouseRoute]: route,
    [ATTR.gatehouseUpstream]: upstream,
    [ATTR.resendCount]: resends > 0 ? resends : undefined,
  };
}

/** A W3C traceparent as a span context to link to; undefined when it is not one. */
function parseTraceparent(tp: string | undefined): SpanContext | undefined {
  const m = tp === undefined ? null : /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp);
  if (m === null) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true };
}

export function endClientSpan(span: Span, status: number, errorType: string | undefined): void {
  if (status > 0) span.setAttribute(ATTR.status, status);
  if (errorType !== undefined || status >= 500) {
    span.setAttribute(ATTR.errorType, errorType ?? String(status));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorType });
  }
  span.end();
}

/** Query keys whose values are secrets, as SPEC §8 lists them (and the semconv's `sig`). */
const SECRET_KEY = /token|key|secret|signature|password|code|^sig$/i;
const MAYBE_SECRET = /token|key|secret|signature|password|code|sig/i;

/**
 * A query string (without `?`) with the values of secret-looking keys replaced by `REDACTED`
 * (`?access_token=abc&page=2` -> `access_token=REDACTED&page=2`). A query that mentions none
 * of the words is returned as it is, after one regex test.
 */
export function redactQuery(query: string): string {
  if (!MAYBE_SECRET.test(query)) return query;
  const pairs = query.split('&');
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i]!;
    const eq = pair.indexOf('=');
    const rawKey = eq < 0 ? pair : pair.slice(0, eq);
    if (eq >= 0 && SECRET_KEY.test(decodeKey(rawKey))) pairs[i] = `${rawKey}=REDACTED`;
  }
  return pairs.join('&');
}

function decodeKey(key: string): string {
  if (!key.includes('%') && !key.includes('+')) return key;
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    return key;
  }
}
