import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import Stripe from 'stripe';
import { WebSocket, WebSocketServer } from 'ws';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { echo, reply, startUpstream } from '../helpers/upstream.js';

/*
 * SPEC §7: every way to an upstream — a proxied request, a WebSocket upgrade, a webhook
 * delivery — takes the same path: its breaker, its credentials, the same forwarding headers.
 */

const stripe = new Stripe('sk_test_unused');
const SECRET = 'whsec_dispatch_test_secret';

describe('one path to an upstream', () => {
  it('counts webhook deliveries to a failing store against its breaker, which opens and shows in /admin/upstreams', async () => {
    const store = await startUpstream(reply(503, 'down'));
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  store:
    endpoints: [${store.url}]
    circuitBreaker: { consecutiveFailures: 3, openFor: 1m }
routes:
  - name: hooks
    listener: in
    match: { path: /webhooks/stripe }
    upstream: store
    webhook: { provider: stripe, secret: ${SECRET}, delivery: { attempts: 20, backoff: { base: 10ms, max: 20ms } } }
  - { name: api, listener: in, match: { pathPrefix: / }, upstream: store }
`);
    const body = JSON.stringify({ id: 'evt_breaker', type: 'charge.succeeded', object: 'event' });
    const res = await g.fetch('in', '/webhooks/stripe', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET }) },
    });
    expect(res.status).toBe(200);
    // three failed deliveries open the breaker; then no delivery reaches the store while it is open
    await eventually(async () => (await request(g.admin('/admin/upstreams'))).json().upstreams.store.breaker.state === 'open');
    expect(store.received).toHaveLength(3);
    await new Promise((r) => setTimeout(r, 200));
    expect(store.received).toHaveLength(3);
    // proxied traffic to the same upstream sees the same breaker
    const proxied = await g.fetch('in', '/orders');
    expect(proxied.status).toBe(503);
    expect(proxied.headers['gatehouse-error']).toBe('circuit_open');
    const text = await scrape(g.admin('/metrics'));
    expect(sample(text, 'gatehouse_circuit_state', { upstream: 'store' })).toBe(2);
    const events = (await request(g.admin('/admin/webhooks/recent?route=hooks'))).json().events;
    expect(events[0].lastError).toMatch(/failed 3 times in a row; retrying in/); // the breaker's refusal, no request sent
  });

  it('sends a webhook delivery the x-request-id gatehouse assigned, as a proxied request has it', async () => {
    const store = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { store: { endpoints: [${store.url}] } }
routes:
  - { name: hooks, listener: in, match: { path: /hook }, upstream: store, webhook: { provider: stripe, secret: ${SECRET} } }
`);
    const body = JSON.stringify({ id: 'evt_rid', type: 'charge.succeeded', object: 'event' });
    const odd = 'not a plain id: spaces and ' + 'x'.repeat(300);
    const res = await g.fetch('in', '/hook', {
      method: 'POST',
      body,
      headers: { 'x-request-id': odd, 'gatehouse-webhook-attempt': '99', 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET }) },
    });
    expect(res.status).toBe(200);
    const assigned = res.headers['x-request-id'];
    expect(assigned).not.toBe(odd);
    await eventually(() => store.received.length === 1);
    expect(store.received[0]!.headers['x-request-id']).toBe(assigned);
    expect(store.received[0]!.headers['gatehouse-webhook-attempt']).toBe('1');
  });
});

/** A real WebSocket echo server on loopback; remembers each upgrade request. */
async function startEchoServer() {
  const server = createServer((req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(req.headers)));
  const wss = new WebSocketServer({ server });
  const upgrades: IncomingMessage[] = [];
  wss.on('connection', (ws, req) => {
    upgrades.push(req);
    ws.on('message', (data) => ws.send(data));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, upgrades };
}

async function roundTrip(url: string, headers: Record<string, string>): Promise<void> {
  const ws = new WebSocket(url, { headers });
  await once(ws, 'open');
  ws.send('ping');
  const [reply] = (await once(ws, 'message')) as [Buffer];
  expect(reply.toString()).toBe('ping');
  ws.close();
}

describe('WebSocket upgrades take the same forwarding headers as plain requests', () => {
  for (const trusted of [false, true]) {
    it(`from ${trusted ? 'a trusted' : 'an untrusted'} peer`, async () => {
      const up = await startEchoServer();
      const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0${trusted ? ', trustedProxies: [127.0.0.1]' : ''} }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app, websocket: true }]
`);
      const spoofed = {
        'x-forwarded-for': '203.0.113.9',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-port': '8443',
        'x-forwarded-prefix': '/admin',
        forwarded: 'for=203.0.113.9;proto=https',
        'x-request-id': 'client-id-1',
      };
      const plain = (await g.fetch('in', '/plain', { headers: spoofed })).json();
      await roundTrip(g.url('in').replace('http', 'ws') + '/socket', spoofed);
      await eventually(() => up.upgrades.length === 1);
      const upgraded = up.upgrades[0]!.headers;
      for (const name of Object.keys(spoofed)) expect(upgraded[name], name).toBe(plain[name]);
      // what only a trusted proxy may assert
      expect(plain['x-forwarded-port']).toBe(trusted ? '8443' : undefined);
      expect(plain.forwarded).toBe(trusted ? 'for=203.0.113.9;proto=https' : undefined);
      expect(upgraded['x-request-id']).toBe('client-id-1');
      if (trusted) expect(upgraded['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
      else expect(upgraded['x-forwarded-for']).toBe('127.0.0.1');
    });
  }
});
