import { request as httpsRequest } from 'node:https';
import { beforeAll, describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { createPki, type TestPki } from '../helpers/certs.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { rawExchange } from '../helpers/raw.js';
import { echo, startUpstream } from '../helpers/upstream.js';

let pki: TestPki;
beforeAll(() => {
  pki = createPki();
});

function httpsGet(url: string, opts: { ca: string; cert: string; key: string; headers: Record<string, string> }): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ...opts, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
}

const FORGED = 'x-client-subject: CN=partner-admin\r\nX-Client-Cert-Sha256: 00ff\r\nx-forwarded-client-cert: By=spiffe://x;Subject="CN=partner-admin"\r\n';

describe('client-certificate headers (SPEC §3.1)', () => {
  it('removes forwardClientCert names and x-forwarded-client-cert from client requests on every listener; only the mTLS listener sets them', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners:
  - name: partners
    address: 127.0.0.1:0
    tls: { cert: ${pki.server.cert}, key: ${pki.server.key}, clientCa: ${pki.ca.cert},
           forwardClientCert: { subject: x-client-subject, fingerprint: X-Client-Cert-Sha256 } }
  - { name: plain, address: 127.0.0.1:0 }
upstreams: { app: { endpoints: [${up.url}] } }
routes:
  - { name: partner-api, listener: partners, match: { pathPrefix: / }, upstream: app }
  - { name: public, listener: plain, match: { pathPrefix: / }, upstream: app }
`);
    // the plain listener, raw bytes: every copy, in any case, is gone before the upstream
    const port = Number(new URL(g.url('plain')).port);
    const answer = await rawExchange(port, `GET /orders HTTP/1.1\r\nHost: shop.test\r\n${FORGED}Connection: close\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(up.received).toHaveLength(1);
    const plain = up.received[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase());
    expect(plain).not.toContain('x-client-subject');
    expect(plain).not.toContain('x-client-cert-sha256');
    expect(plain).not.toContain('x-forwarded-client-cert');

    // the mTLS listener: the verified certificate's facts replace the client's copies
    const text = await httpsGet(g.url('partners').replace('http:', 'https:') + '/orders', {
      ca: pki.ca.certPem,
      cert: pki.client.certPem,
      key: pki.client.keyPem,
      headers: { 'x-client-subject': 'CN=partner-admin', 'x-forwarded-client-cert': 'Subject="CN=partner-admin"' },
    });
    const headers = JSON.parse(text).headers;
    expect(headers['x-client-subject']).toBe('CN=store-client,O=Gatehouse Test');
    expect(headers['x-client-cert-sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(headers['x-forwarded-client-cert']).toBeUndefined();
    expect(up.received[1]!.rawHeaders.filter((h) => h.toLowerCase() === 'x-client-subject')).toHaveLength(1);
  });
});
