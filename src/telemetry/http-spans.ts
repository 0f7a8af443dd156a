import { SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { Exchange } from '../proxy/exchange.js';
import { ATTR } from './names.js';
import type { Tracing } from './tracing.js';

/**
 * The HTTP semantic-convention spans: one SERVER span per request (`{method} {http.route}`),
 * one CLIENT span per upstream attempt (`{method}`), the client span's context sent upstream.
 */

export function startServerSpan(
  tracing: Tracing,
  ex: Exchange,
  traceparent: string | undefined,
  tracestate: string | undefined,
  scheme: string,
): void {
  const parent = tracing.extract(traceparent, tracestate, ex.req.rawHeaders);
  const span = tracing.tracer.startSpan(
    ex.method,
    {
      kind: SpanKind.SERVER,
      attributes: {
        [ATTR.method]: ex.method,
        [ATTR.urlPath]: ex.path,
        [ATTR.urlScheme]: scheme,
        [ATTR.serverAddress]: ex.host || undefined,
        [ATTR.serverPort]: ex.req.socket.localPort,
        [ATTR.peerAddress]: ex.req.socket.remoteAddress,
        [ATTR.requestId]: ex.requestId,
      },
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

export interface ClientTarget {
  readonly scheme: string;
  readonly hostname: string;
  readonly port: number;
  readonly path: string;
}

export function startClientSpan(tracing: Tracing, ex: Exchange, target: ClientTarget): Span {
  const parent = ex.span === undefined ? undefined : trace.setSpan(tracing.extract(undefined, undefined, []), ex.span);
  return tracing.tracer.startSpan(
    ex.method,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        [ATTR.method]: ex.method,
        [ATTR.urlPath]: target.path,
        [ATTR.urlScheme]: target.scheme,
        [ATTR.serverAddress]: target.hostname,
        [ATTR.serverPort]: target.port,
        [ATTR.peerAddress]: target.hostname,
        [ATTR.gatehouseRoute]: ex.route?.name,
        [ATTR.gatehouseUpstream]: ex.route?.upstream,
        [ATTR.resendCount]: ex.attempts > 1 ? ex.attempts - 1 : undefined,
      },
    },
    parent,
  );
}

export function endClientSpan(span: Span, status: number, errorType: string | undefined): void {
  if (status > 0) span.setAttribute(ATTR.status, status);
  if (errorType !== undefined || status >= 500) {
    span.setAttribute(ATTR.errorType, errorType ?? String(status));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorType });
  }
  span.end();
}
