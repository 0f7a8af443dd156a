import { timingSafeEqual, createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import type { Address } from '../config/schema.js';
import { isLoopbackHost } from '../config/values.js';
import type { Secret } from '../config/secret.js';
import type { AdminRoute } from '../core/admin.js';
import { GatehouseError } from '../core/errors.js';
import { sendProblem } from '../core/problem.js';
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
    handle(req, res, source, router, address.host).catch((err: unknown) => {
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

async function handle(req: IncomingMessage, res: ServerResponse, source: AdminSource, router: AdminRouter, adminHost: string): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const path = url.pathname;
  const method = req.method ?? 'GET';

  if (path === '/healthz') return json(res, 200, { status: 'ok' });
  if (path === '/readyz') return source.isReady() ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'draining' });
  if (path === '/metrics') return source.metrics(req, res);

  if (!path.startsWith('/admin/')) return json(res, 404, { error: 'not found' });
  const token = source.token();
  if (token === undefined) {
    const refusal = browserRefusal(req, adminHost);
    if (refusal !== undefined) {
      sendProblem(res, new GatehouseError('forbidden', refusal), { route: undefined, traceId: '', requestId: '', extraHeaders: undefined, closing: false });
      return;
    }
  } else if (!authorized(req, token)) {
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

/**
 * Constant-time comparison of digests, so neither the token nor its length leaks through timing.
 * The scheme is case-insensitive (RFC 9110 §11.1): `bearer x` is the same as `Bearer x`.
 */
function authorized(req: IncomingMessage, token: Secret): boolean {
  const m = /^bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
  const given = m?.[1] ?? '';
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token.reveal()).digest();
  return timingSafeEqual(a, b) && given.length > 0;
}

/**
 * Without a token the admin API trusts whoever can connect, so it must not be reachable through
 * a browser: a page on any site could POST to it (CSRF), or resolve its own name to 127.0.0.1
 * and read the answers (DNS rebinding). Browsers mark their requests with `Origin` (every POST,
 * every cross-origin fetch) and `Sec-Fetch-Site`, and send the name they resolved as `Host`;
 * curl, probes and scripts send neither header and name the address they connect to.
 * Returns why a request is refused, or undefined.
 */
function browserRefusal(req: IncomingMessage, adminHost: string): string | undefined {
  if (req.headers.origin !== undefined) return 'the admin API has no token, so it refuses requests from browsers (Origin header)';
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return `the admin API has no token, so it refuses requests from browsers (Sec-Fetch-Site: ${site})`;
  const host = req.headers.host;
  if (host !== undefined && !isAdminHost(hostnameOf(host), adminHost, req.socket.localAddress)) {
    return 'the admin API has no token, so it answers only requests addressed to its own address or a loopback name (Host)';
  }
  return undefined;
}

/** `Host` without its port and brackets, lowercase, without one trailing dot. */
function hostnameOf(host: string): string {
  const h = host.trim().toLowerCase();
  const name = h.startsWith('[') ? h.slice(1, h.indexOf(']')) : h.replace(/:\d*$/, '');
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/**
 * A name no DNS answer can point elsewhere: the admin address itself, the IP address the client
 * connected to, a loopback IP, `localhost` and `*.localhost` (RFC 6761: always loopback).
 */
function isAdminHost(name: string, adminHost: string, localAddress: string | undefined): boolean {
  if (name === '') return false;
  if (name === adminHost.toLowerCase() || name === 'localhost' || name.endsWith('.localhost')) return true;
  if (isIP(name) === 0) return false;
  const ip = name.replace(/^::ffff:(?=\d+\.)/, '');
  return isLoopbackHost(ip) || ip === localAddress?.replace(/^::ffff:(?=\d+\.)/, '');
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
