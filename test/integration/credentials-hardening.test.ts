import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { createPki, type TestPki } from '../helpers/certs.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually } from '../helpers/http.js';
import { echo, startUpstream } from '../helpers/upstream.js';

const SECRET = 'cs_live_Qm4vT8wLp2';

let pki: TestPki;
beforeAll(() => {
  pki = createPki();
});

type Answer = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/** A token endpoint whose answers are scripted per call; counts calls and open sockets. */
async function tokenEndpoint(answer: Answer, tls?: { cert: string; key: string; ca: string }) {
  const state = { url: '', calls: 0, answer, peers: [] as (string | undefined)[] };
  const sockets = new Set<Socket>();
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      state.calls++;
      state.peers.push(tls === undefined ? undefined : String((req.socket as TLSSocket).getPeerCertificate().subject?.CN));
      state.answer(req, res, state.calls);
    });
  };
  const server =
    tls === undefined
      ? createServer(handler)
      : createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true }, handler);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.url = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${(server.address() as AddressInfo).port}/oauth/token`;
  onCleanup(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return state;
}

const token = (value: string, expiresIn: unknown = 3600): Answer => (_req, res) =>
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: value, token_type: 'Bearer', expires_in: expiresIn }));
const never: Answer = () => {};

const config = (upstreamUrl: string, tokenUrl: string, extra = '') => `
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams:
  pay:
    endpoints: [${upstreamUrl}]
    credentials: { oauth2: { tokenUrl: "${tokenUrl}", clientId: store, clientSecret: "\${env:CS}"${extra} } }
routes: [{ name: payments, listener: out, match: { pathPrefix: / }, upstream: pay }]
`;

describe('OAuth2 credentials hardening (SPEC §3.1)', () => {
  it('answers 503 auth_unavailable within 1 s while the token endpoint never answers, not after its 10 s timeout', async () => {
    const idp = await tokenEndpoint(never);
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, idp.url), { env: { CS: SECRET } });
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const res = await g.fetch('out', '/charges');
      const tookMs = performance.now() - started;
      expect(res.status).toBe(503);
      expect(res.headers['gatehouse-error']).toBe('auth_unavailable');
      expect(res.headers['retry-after']).toBe('1');
      expect(res.json().detail).toContain('has not answered within 1000ms');
      expect(tookMs).toBeLessThan(1_500);
    }
    expect(idp.calls).toBe(1); // one fetch in flight, not one per request
    expect(up.received).toHaveLength(0);
  });

  it('refreshes a used token ahead of expiry in the background: the request after it carries the new one without waiting', async () => {
    const idp = await tokenEndpoint((req, res, n) => token(`tok-${n}`, 2)(req, res, n));
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, idp.url), { env: { CS: SECRET } });
    expect((await g.fetch('out', '/x')).json().headers.authorization).toBe('Bearer tok-1');
    // no request arrives; the token is refreshed 10% before its 2 s run out
    await eventually(() => idp.calls === 2, 3_000, 50);
    // from now on the token endpoint hangs: the fresh token still serves, without a wait
    idp.answer = never;
    const started = performance.now();
    const res = await g.fetch('out', '/x');
    expect(res.json().headers.authorization).toBe('Bearer tok-2');
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('refuses token answers whose expires_in is not a positive number (-5, "2") with 502, forwarding nothing', async () => {
    for (const expiresIn of [-5, '2', 0]) {
      const idp = await tokenEndpoint(token('tok-odd', expiresIn));
      const up = await startUpstream(echo);
      const g = await startGatehouse(config(up.url, idp.url), { env: { CS: SECRET } });
      const res = await g.fetch('out', '/x');
      expect(res.status, String(expiresIn)).toBe(502);
      expect(res.headers['gatehouse-error']).toBe('bad_gateway');
      expect(res.json().detail).toContain('expires_in that is not a positive number');
      expect(up.received).toHaveLength(0);
    }
  });

  it('refuses token answers over 64 KB without reading them whole: by Content-Length, and while streaming', async () => {
    let written = 0;
    const endless: Answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }); // chunked, no length
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      const pump = () => {
        while (!res.destroyed && written < 300 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
      };
      res.write('{"access_token":"');
      pump();
    };
    const idp = await tokenEndpoint(endless);
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, idp.url, ', timeout: 5s'), { env: { CS: SECRET } });
    const res = await g.fetch('out', '/x');
    expect(res.status).toBe(502);
    expect(res.json().detail).toContain('answered more than 64 KB');
    expect(written).toBeLessThan(32 * 1024 * 1024); // the sender was stopped, not drained to the end
    expect(up.received).toHaveLength(0);

    const declared = await tokenEndpoint((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(300 * 1024 * 1024) });
      res.write('{');
    });
    const g2 = await startGatehouse(config(up.url, declared.url, ', timeout: 5s'), { env: { CS: SECRET } });
    const res2 = await g2.fetch('out', '/x');
    expect(res2.status).toBe(502);
    expect(res2.json().detail).toContain('answered more than 64 KB');
  });

  it('reaches a token endpoint with a private CA and a client certificate through credentials.oauth2.tls', async () => {
    const idp = await tokenEndpoint(token('tok-mtls'), { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem });
    const up = await startUpstream(echo);
    const tls = `, tls: { ca: ${pki.ca.cert}, cert: ${pki.client.cert}, key: ${pki.client.key} }`;
    const g = await startGatehouse(config(up.url, idp.url, tls), { env: { CS: SECRET } });
    const res = await g.fetch('out', '/x');
    expect(res.status).toBe(200);
    expect(res.json().headers.authorization).toBe('Bearer tok-mtls');
    expect(idp.peers).toEqual(['store-client']);

    // without the block the private CA is not trusted: nothing is sent, the request is refused
    const g2 = await startGatehouse(config(up.url, idp.url), { env: { CS: SECRET } });
    expect((await g2.fetch('out', '/x')).status).toBe(503);
    expect(idp.calls).toBe(1);
    expect(up.received).toHaveLength(1);
  });
});
