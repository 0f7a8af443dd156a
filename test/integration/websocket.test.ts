import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually } from '../helpers/http.js';

/** A real WebSocket echo server on loopback; remembers each upgrade request. */
async function startEchoServer() {
  const server = createServer((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ server });
  const upgrades: IncomingMessage[] = [];
  wss.on('connection', (ws, req) => {
    upgrades.push(req);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, upgrades, wss };
}

const config = (upstream: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${upstream}] } }
routes:
  - { name: live, listener: in, match: { pathPrefix: /live }, upstream: app, websocket: true, rewrite: { stripPrefix: /live } }
  - { name: plain, listener: in, match: { pathPrefix: / }, upstream: app }
`;

describe('WebSocket', () => {
  it('relays a WebSocket through a route with websocket: true, both ways, with the request headers gatehouse sets', async () => {
    const echo = await startEchoServer();
    const g = await startGatehouse(config(echo.url));
    const ws = new WebSocket(g.url('in').replace('http', 'ws') + '/live/feed?x=1', { headers: { 'x-request-id': 'ws-1', 'x-forwarded-for': '6.6.6.6' } });
    onCleanup(() => ws.terminate());
    await once(ws, 'open');
    const replies: string[] = [];
    ws.on('message', (d: Buffer) => replies.push(d.toString()));
    ws.send('hello');
    ws.send('world');
    await eventually(() => replies.length === 2);
    expect(replies).toEqual(['hello', 'world']);
    const big = Buffer.alloc(256 * 1024, 7);
    ws.send(big);
    const [echoed] = (await once(ws, 'message')) as [Buffer];
    expect(Buffer.compare(echoed, big)).toBe(0);

    const seen = echo.upgrades[0]!;
    expect(seen.url).toBe('/feed?x=1');
    expect(seen.headers['x-request-id']).toBe('ws-1');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    ws.close();
    await once(ws, 'close');
    const line = await eventually(() => g.accessLog.json.find((l) => l.route === 'live'));
    expect(line).toMatchObject({ status: 101, path: '/live/feed', attempts: 1 });
  });

  it('refuses an upgrade on a route without websocket: true with a problem answer', async () => {
    const echo = await startEchoServer();
    const g = await startGatehouse(config(echo.url));
    const ws = new WebSocket(g.url('in').replace('http', 'ws') + '/other');
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('no_route');
    expect(JSON.parse(Buffer.concat(chunks).toString())).toMatchObject({ code: 'no_route', route: 'plain' });
    expect(echo.upgrades).toHaveLength(0);
  });

  it('answers 502 bad_gateway when the upstream cannot be reached for the upgrade', async () => {
    const echo = await startEchoServer();
    const g = await startGatehouse(config(echo.url.replace(/:\d+$/, ':1')));
    const ws = new WebSocket(g.url('in').replace('http', 'ws') + '/live');
    ws.on('error', () => {});
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
    expect(res.statusCode).toBe(502);
    expect(res.headers['gatehouse-error']).toBe('bad_gateway');
  });

  it('answers 504 upstream_timeout when the upstream does not answer the upgrade within the route timeout', async () => {
    // an upstream that takes the upgrade request and never answers it
    const silent = createServer();
    const held: import('node:stream').Duplex[] = [];
    silent.on('upgrade', (_req, socket) => held.push(socket.resume()));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    onCleanup(() => new Promise<void>((resolve) => (held.forEach((s) => s.destroy()), silent.close(() => resolve()))));
    const g = await startGatehouse(
      config(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`).replace('websocket: true,', 'websocket: true, timeout: 300ms,'),
    );
    const started = Date.now();
    const ws = new WebSocket(g.url('in').replace('http', 'ws') + '/live');
    ws.on('error', () => {});
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
    expect(res.statusCode).toBe(504);
    expect(res.headers['gatehouse-error']).toBe('upstream_timeout');
    expect(Date.now() - started).toBeLessThan(2000);
    // and gatehouse gave up its connection to the upstream
    await eventually(() => held.length === 1 && held[0]!.readableEnded);
  });

  it('closes the client side when the upstream WebSocket goes away', async () => {
    const echo = await startEchoServer();
    const g = await startGatehouse(config(echo.url));
    const ws = new WebSocket(g.url('in').replace('http', 'ws') + '/live');
    await once(ws, 'open');
    for (const c of echo.wss.clients) c.terminate();
    await once(ws, 'close');
    await eventually(() => g.gh.currentPlan().upstreams.get('app')!.inFlight === 0);
  });
});
