import { timingSafeEqual, createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Address } from '../config/schema.js';
import type { Secret } from '../config/secret.js';
import type { AdminRoute } from '../core/admin.js';
import { createAdminRouter, type AdminRouter } from './router.js';

export type ReloadResult =
  | { readonly ok: true; readonly version: number; readonly changed: boolean }
  | { readonly ok: false; readonly errors: readonly string[] };

/** What the admin API reads and does; the composition root provides it. */
export interface AdminSource {
  isReady(): boolean;
  token(): Secret | undefined;
  metrics(req: IncomingMessage, res: ServerResponse): void;
  /** `/admin/*`: the route table every concern contributes to. */
  readonly routes: readonly AdminRoute[];
}

/** The largest JSON body an admin action reads. */
const MAX_BODY_BYTES = 1024 * 1024;

/**
 * The admin listener (SPEC §9), loopback by default. `/healthz`, `/readyz` and `/metrics` stay
 * open; `/admin/*` needs the bearer token when one is configured.
 */
export async function startAdminServer(address: Address, source: AdminSource): Promise<{ server: Server; address: AddressInfo }> {
  const router = createAdminRouter(source.routes);
  const server = createServer((req, res) => {
    handle(req, res, source, router).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: (err as Error).message });
      else res.destroy();
    });
  });
  server.listen(address.port, address.host);
  try {
    await once(server, 'listening'); // rejects with the 'error' event
  } catch (err) {
    throw new Error(`cannot listen on ${address.text} for the admin API: ${(err as Error).message}`);
  }
  return { server, address: server.address() as AddressInfo };
}

async function handle(req: IncomingMessage, res: ServerResponse, source: AdminSource, router: AdminRouter): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const path = url.pathname;
  const method = req.method ?? 'GET';

  if (path === '/healthz') return json(res, 200, { status: 'ok' });
  if (path === '/readyz') return source.isReady() ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'draining' });
  if (path === '/metrics') return source.metrics(req, res);

  if (!path.startsWith('/admin/')) return json(res, 404, { error: 'not found' });
  if (!authorized(req, source.token())) {
    res.setHeader('www-authenticate', 'Bearer realm="gatehouse-admin"');
    return json(res, 401, { error: 'a valid admin bearer token is required' });
  }

  const body = await readJson(req);
  if (body instanceof Error) return json(res, 400, { error: body.message });
  const routed = router.route(method, path, { query: url.searchParams, body });
  if (routed === undefined) return json(res, 404, { error: 'not found' });
  const answer = await routed;
  if (answer.status === 204) {
    res.writeHead(204, { 'cache-control': 'no-store' }).end();
    return;
  }
  return json(res, answer.status, answer.body ?? {});
}

/** The request's JSON body: undefined when it has none, an Error when it is not JSON or too large. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return new Error(`the request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return new Error('the request body is not valid JSON');
  }

}

/** Constant-time comparison of digests, so neither the token nor its length leaks through timing. */
function authorized(req: IncomingMessage, token: Secret | undefined): boolean {
  if (token === undefined) return true;
  const header = req.headers.authorization ?? '';
  const given = header.startsWith('Bearer ') ? header.slice(7).trim() : '';
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token.reveal()).digest();
  return timingSafeEqual(a, b) && given.length > 0;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
