import type { TLSSocket } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { createPki, type TestPki } from '../helpers/certs.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request, webSocketRoundTrip } from '../helpers/http.js';
import { rawExchange } from '../helpers/raw.js';
import { startUpstream, type Reply } from '../helpers/upstream.js';

let pki: TestPki;
beforeAll(() => {
  pki = createPki();
});

const KEY = 'sk_live_51Hx9fQ2eZvKYlo2C';

/** Answers 200 with the SNI name the TLS client sent. */
const sni: Reply = (req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`sni=${(req.socket as TLSSocket).servername || '(none)'}`);
};

const portOf = (url: string) => Number(new URL(url).port);

describe('upstream TLS name (SPEC §3.1)', () => {
  it('never verifies the upstream against the client Host: rewrite.host: preserve + a certificate for that name -> 502, no credential sent', async () => {
    const wrong = pki.issue('wrong', { san: 'DNS:wrong.test' }); // a valid certificate, for another name than the endpoint's
    const up = await startUpstream(sni, { tls: { cert: wrong.certPem, key: wrong.keyPem } });
    const g = await startGatehouse(`
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams:
  pay:
    endpoints: [${up.url}]
    tls: { ca: ${pki.ca.cert} }
    credentials: { header: { name: Authorization, value: "Bearer ${KEY}" } }
routes: [{ name: pay, listener: out, match: { pathPrefix: / }, upstream: pay, rewrite: { host: preserve } }]
`);
    const answer = await rawExchange(portOf(g.url('out')), 'GET /v1/charges HTTP/1.1\r\nHost: wrong.test\r\nConnection: close\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 502 /);
    expect(answer).toMatch(/gatehouse-error: bad_gateway/);
    expect(answer).toMatch(/TLS handshake with upstream 'pay' failed/);
    expect(up.received).toHaveLength(0);
    expect(g.log.all).not.toContain(KEY);
  });

  it('sends the endpoint host name as SNI under rewrite.host: preserve, and tls.serverName when set, for hostname endpoints too', async () => {
    const up = await startUpstream(sni, { tls: { cert: pki.server.certPem, key: pki.server.keyPem } }); // localhost, 127.0.0.1
    const api = pki.issue('api', { san: 'DNS:api.provider.test' });
    const named = await startUpstream(sni, { tls: { cert: api.certPem, key: api.keyPem } });
    const g = await startGatehouse(`
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams:
  local: { endpoints: ["https://localhost:${up.port}"], tls: { ca: ${pki.ca.cert} } }
  named: { endpoints: ["https://localhost:${named.port}"], tls: { ca: ${pki.ca.cert}, serverName: api.provider.test } }
routes:
  - { name: local, listener: out, match: { pathPrefix: /local }, upstream: local, rewrite: { host: preserve } }
  - { name: named, listener: out, match: { pathPrefix: /named }, upstream: named, rewrite: { host: preserve } }
`);
    const local = await g.fetch('out', '/local', { headers: { host: 'shop.example' } });
    expect([local.status, local.text]).toEqual([200, 'sni=localhost']);
    expect(up.received[0]!.headers.host).toBe('shop.example'); // preserve changes the Host header only
    const other = await g.fetch('out', '/local', { headers: { host: 'other.example' } });
    expect([other.status, other.text]).toEqual([200, 'sni=localhost']);
    const viaName = await g.fetch('out', '/named', { headers: { host: 'shop.example' } });
    expect([viaName.status, viaName.text]).toEqual([200, 'sni=api.provider.test']);
  });

  it('health checks verify tls.serverName, not the endpoint address', async () => {
    const api = pki.issue('api-hc', { san: 'DNS:api.provider.test' });
    const up = await startUpstream(sni, { tls: { cert: api.certPem, key: api.keyPem } });
    const g = await startGatehouse(`
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams:
  named:
    endpoints: ["https://localhost:${up.port}"]
    tls: { ca: ${pki.ca.cert}, serverName: api.provider.test }
    healthCheck: { path: /healthz, interval: 100ms, timeout: 1s, unhealthyThreshold: 1 }
routes: [{ name: named, listener: out, match: { pathPrefix: / }, upstream: named }]
`);
    await eventually(() => up.received.filter((r) => r.url === '/healthz').length >= 3, 5_000);
    const view = (await request(g.admin('/admin/upstreams'))).json();
    expect(view.upstreams.named.endpoints[0].healthy).toBe(true);
  });

  it('WebSocket upgrades under rewrite.host: preserve verify the endpoint, not the client Host', async () => {
    const wrong = pki.issue('wrong-ws', { san: 'DNS:wrong.test' });
    const up = await startUpstream(sni, { tls: { cert: wrong.certPem, key: wrong.keyPem } });
    let upgrades = 0;
    const wss = new WebSocketServer({ server: up.server });
    wss.on('connection', (s) => {
      upgrades++;
      s.on('message', (m) => s.send(`got:${(m as Buffer).toString()}`));
    });
    onCleanup(() => wss.close());
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { api: { endpoints: [${up.url}], tls: { ca: ${pki.ca.cert} } } }
routes: [{ name: live, listener: in, match: { pathPrefix: / }, upstream: api, websocket: true, rewrite: { host: preserve } }]
`);
    const url = g.url('in').replace('http', 'ws') + '/live';
    await expect(webSocketRoundTrip(url, 'hi', { host: 'wrong.test' })).rejects.toThrow(/502/);
    expect(upgrades).toBe(0);
  });
});
