import type { ServerResponse } from 'node:http';
import { ERRORS, type GatehouseError } from './errors.js';

export interface ProblemContext {
  readonly route: string | undefined;
  readonly traceId: string;
  readonly requestId: string;
  /** Headers stages added for every answer (RateLimit, ...): [name, value, ...]. */
  readonly extraHeaders: readonly string[] | undefined;
  readonly closing: boolean;
}

/**
 * The one writer of gatehouse's own answers: RFC 9457 problem+json with a `gatehouse-error`
 * header. Once the upstream's headers are out it can only cut the connection (Envoy does the same).
 */
export function sendProblem(res: ServerResponse, err: GatehouseError, ctx: ProblemContext): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { status, title } = ERRORS[err.code];
  const body = JSON.stringify({
    type: `urn:gatehouse:error:${err.code}`,
    title,
    status,
    code: err.code,
    route: ctx.route,
    traceId: ctx.traceId || undefined,
    requestId: ctx.requestId || undefined,
    detail: err.message,
  });
  const headers: string[] = [
    'content-type',
    'application/problem+json',
    'content-length',
    String(Buffer.byteLength(body)),
    'cache-control',
    'no-store',
    'gatehouse-error',
    err.code,
  ];
  if (ctx.requestId) headers.push('x-request-id', ctx.requestId);
  if (err.headers !== undefined) for (const [k, v] of Object.entries(err.headers)) headers.push(k, v);
  if (ctx.extraHeaders !== undefined) for (const h of ctx.extraHeaders) headers.push(h);
  if (ctx.closing) headers.push('connection', 'close');
  res.writeHead(status, headers);
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/**
 * The same answer for a connection that has no ServerResponse (the HTTP parser refused the
 * request: bad framing, oversized headers, too slow): raw bytes, then the connection closes.
 */
export function problemResponseBytes(err: GatehouseError): string {
  const { status, title } = ERRORS[err.code];
  const body = JSON.stringify({ type: `urn:gatehouse:error:${err.code}`, title, status, code: err.code, detail: err.message });
  return (
    `HTTP/1.1 ${status} ${title}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `cache-control: no-store\r\ngatehouse-error: ${err.code}\r\nconnection: close\r\n\r\n${body}`
  );
}
