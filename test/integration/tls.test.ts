import { copyFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { createPki, type TestPki } from '../helpers/certs.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, webSocketRoundTrip } from '../helpers/http.js';
import { echo, startUpstream } from '../helpers/upstream.js';

let pki: TestPki;
let other: TestPki; // a CA gatehouse does not trust
beforeAll(() => {
  pki = createPki();
  other = createPki('untrusted-ca');
});

interface TlsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  serial: string;
}

function get(url: string, opts: { ca?: string; cert?: string; key?: string; headers?: Record<string, string> } = {}): Promise<TlsResponse> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca: opts.ca, cert: opts.cert, key: opts.key, headers: opts.headers, agent: false }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber;
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text, serial }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

const httpsUrl = (g: TestGatehouse, listener: string) => `https://127.0.0.1:${g.gh.listenerAddress(listener)!.port}`;

function gatehouseFor(upstreamUrl: string, tlsYaml: string) {
  return startGatehouse(`
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams:
  api:
    endpoints: [${upstreamUrl}]
${tlsYaml ? `    tls: ${tlsYaml}` : ''}
routes: [{ name: r, listener: out, match: { pathPrefix: / }, upstream: api }]
`);
}

describe('upstream TLS', () => {
  it('reaches an HTTPS upstream whose CA is added with tls.ca', async () => {
    const up = await startUpstream(echo, { tls: { cert: pki.server.certPem, key: pki.server.keyPem } });
    const g = await gatehouseFor(up.url, `{ ca: ${pki.ca.cert} }`);
    const res = await g.fetch('out', '/charges');
    expect(res.status).toBe(200);
    expect(res.json().url).toBe('/charges');
  });

  it('answers 502 bad_gateway without sending a request byte when the certificate does not verify', async () => {
    const up = await startUpstream(echo, { tls: { cert: pki.server.certPem, key: pki.server.keyPem } });
    const g = await gatehouseFor(up.url, '');
    const res = await g.fetch('out', '/charges', { method: 'POST', body: 'card=4242' });
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('bad_gateway');
    expect(res.json()).toMatchObject({ code: 'bad_gateway', route: 'r' });
    expect(res.json().detail).toMatch(/TLS handshake with upstream 'api' failed \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);
    expect(up.received).toHaveLength(0);
    const line = g.log.json.find((l) => l.msg === 'TLS with the upstream failed');
    expect(line).toMatchObject({ upstream: 'api', level: 'warn' });
    expect(line.reason).toMatch(/UNABLE_TO|SELF_SIGNED/);
  });

  it('refuses a certificate from another CA even when one CA is added', async () => {
    const up = await startUpstream(echo, { tls: { cert: other.server.certPem, key: other.server.keyPem } });
    const g = await gatehouseFor(up.url, `{ ca: ${pki.ca.cert} }`);
    expect((await g.fetch('out', '/x')).status).toBe(502);
    expect(up.received).toHaveLength(0);
  });

  it('checks the certificate against serverName (SNI and verification name)', async () => {
    const named = pki.issue('named', { san: 'DNS:api.internal' });
    let sni: string | undefined;
    const up = await startUpstream(echo, { tls: { cert: named.certPem, key: named.keyPem, SNICallback: (name, cb) => ((sni = name), cb(null, undefined)) } });
    const bad = await gatehouseFor(up.url, `{ ca: ${pki.ca.cert} }`);
    const refused = await bad.fetch('out', '/x');
    expect(refused.status).toBe(502);
    expect(refused.json().detail).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
    const good = await gatehouseFor(up.url, `{ ca: ${pki.ca.cert}, serverName: api.internal }`);
    expect((await good.fetch('out', '/x')).status).toBe(200);
    expect(sni).toBe('api.internal');
  });

  it('presents a client certificate to an upstream that requires one (mTLS)', async () => {
    const tls = { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true };
    const seen: string[] = [];
    const up = await startUpstream((req, res) => {
      seen.push(String((req.socket as TLSSocket).getPeerCertificate().subject.CN));
      res.writeHead(200).end('ok');
    }, { tls });
    const without = await gatehouseFor(up.url, `{ ca: ${pki.ca.cert} }`);
    expect((await without.fetch('out', '/x')).status).toBe(502);
    const withCert = await gatehouseFor(up.url, `{ ca: ${pki.ca.cert}, cert: ${pki.client.cert}, key: ${pki.client.key} }`);
    expect((await withCert.fetch('out', '/x')).status).toBe(200);
    expect(seen).toEqual(['store-client']);
  });

  it('skips verification only with insecureSkipVerify, and warns at start and on every reload', async () => {
    const up = await startUpstream(echo, { tls: { cert: other.server.certPem, key: other.server.keyPem } });
    const g = await gatehouseFor(up.url, '{ insecureSkipVerify: true }');
    expect((await g.fetch('out', '/x')).status).toBe(200);
    const warnings = () => g.log.json.filter((l) => l.msg.includes('insecureSkipVerify') && l.upstream === 'api' && l.level === 'warn').length;
    expect(warnings()).toBe(1);
    g.write(`
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams: { api: { endpoints: [${up.url}], tls: { insecureSkipVerify: true }, connectTimeout: 2s } }
routes: [{ name: r, listener: out, match: { pathPrefix: / }, upstream: api }]
`);
    expect((await g.gh.reload('api')).ok).toBe(true);
    expect(warnings()).toBe(2);
  });

  it('uses the upstream TLS settings for WebSocket upgrades', async () => {
    const up = await startUpstream(echo, { tls: { cert: pki.server.certPem, key: pki.server.keyPem } });
    const wss = new WebSocketServer({ server: up.server });
    wss.on('connection', (s) => s.on('message', (m) => s.send(`tls:${(m as Buffer).toString()}`)));
    onCleanup(() => wss.close());
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { api: { endpoints: [${up.url}], tls: { ca: ${pki.ca.cert} } } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: api, websocket: true }]
`);
    const reply = await webSocketRoundTrip(g.url('in').replace('http', 'ws') + '/live', 'hi');
    expect(reply).toBe('tls:hi');
  });
});

describe('inbound TLS', () => {
  it('terminates HTTPS on a listener with tls and tells the upstream X-Forwarded-Proto: https', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, tls: { cert: ${pki.server.cert}, key: ${pki.server.key}, minVersion: TLSv1.3 } }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const res = await get(httpsUrl(g, 'in') + '/shop', { ca: pki.ca.certPem });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text).headers['x-forwarded-proto']).toBe('https');
    // TLS 1.2 is below this listener's minVersion
    await expect(
      new Promise((resolve, reject) => {
        const req = httpsRequest(httpsUrl(g, 'in'), { ca: pki.ca.certPem, maxVersion: 'TLSv1.2', agent: false }, resolve);
        req.on('error', reject);
        req.end();
      }),
    ).rejects.toThrow();
  });

  it('refuses a client without a valid certificate at the handshake (mTLS) and forwards the subject of one that has it', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners:
  - name: in
    address: 127.0.0.1:0
    tls: { cert: ${pki.server.cert}, key: ${pki.server.key}, clientCa: ${pki.ca.cert},
           forwardClientCert: { subject: x-client-subject, fingerprint: x-client-cert-sha256 } }
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    await expect(get(httpsUrl(g, 'in') + '/x', { ca: pki.ca.certPem })).rejects.toThrow();
    const stranger = other.issue('stranger', { client: true });
    await expect(get(httpsUrl(g, 'in') + '/x', { ca: pki.ca.certPem, cert: stranger.certPem, key: stranger.keyPem })).rejects.toThrow();
    expect(up.received).toHaveLength(0);
    const res = await get(httpsUrl(g, 'in') + '/x', {
      ca: pki.ca.certPem,
      cert: pki.client.certPem,
      key: pki.client.keyPem,
      headers: { 'x-client-subject': 'CN=admin' },
    });
    expect(res.status).toBe(200);
    const headers = JSON.parse(res.text).headers;
    expect(headers['x-client-subject']).toBe('CN=store-client,O=Gatehouse Test');
    expect(headers['x-client-cert-sha256']).toMatch(/^[0-9a-f]{64}$/);
  });

  it('serves a rotated certificate to new connections once the files change, without a restart', async () => {
    const up = await startUpstream(echo);
    const first = pki.issue('rotating');
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, tls: { cert: ${first.cert}, key: ${first.key} } }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const before = await get(httpsUrl(g, 'in') + '/', { ca: pki.ca.certPem });
    const next = pki.issue('rotated');
    copyFileSync(next.key, first.key);
    copyFileSync(next.cert, first.cert);
    await eventually(async () => (await get(httpsUrl(g, 'in') + '/', { ca: pki.ca.certPem })).serial !== before.serial, 8_000, 200);
    expect(g.log.json.some((l) => l.msg === 'TLS certificate reloaded')).toBe(true);
  });
});
