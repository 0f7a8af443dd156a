import { timingSafeEqual, createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Address } from '../config/schema.js';
import type { Secret } from '../config/secret.js';

export type ReloadResult =
  | { readonly ok: true; readonly version: number; readonly changed: boolean }
  | { readonly ok: false; readonly errors: readonly string[] };

/** What the admin API reads and does; the gatehouse runtime provides it. */
export interface AdminSource {
  isReady(): boolean;
  token(): Secret | undefined;
  configView(): unknown;
  upstreamsView(): unknown;
  /** Extra `/admin/...` handlers added by capabilities (webhooks, quotas); true when handled. */
  handle?(req: IncomingMessage, res: ServerResponse, path: string, url: URL): boolean | Promise<boolean>;
  metrics(req: IncomingMessage, res: ServerResponse): void;
  reload(): Promise<ReloadResult>;
}

/**
 * The admin listener (SPEC §9), loopback by default. `/healthz`, `/readyz` and `/metrics` stay
 * open; `/admin/*` needs the bearer token when one is configured.
 */
export async function startAdminServer(address: Address, source: AdminSource): Promise<{ server: Server; address: AddressInfo }> {
  const server = createServer((req, res) => {
    handle(req, res, source).catch((err: unknown) => {
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

async function handle(req: IncomingMessage, res: ServerResponse, source: AdminSource): Promise<void> {
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

  if (path === '/admin/config' && method === 'GET') return json(res, 200, source.configView());
  if (path === '/admin/upstreams' && method === 'GET') return json(res, 200, source.upstreamsView());
  if (path === '/admin/reload' && method === 'POST') {
    const result = await source.reload();
    return result.ok ? json(res, 200, { version: result.version, changed: result.changed }) : json(res, 400, { errors: result.errors });
  }
  if (source.handle !== undefined && (await source.handle(req, res, path, url))) return;
  return json(res, 404, { error: 'not found' });
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

export function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
