import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually } from '../helpers/http.js';
import { echo, startUpstream } from '../helpers/upstream.js';

const SECRET = 'cs_live_7hF2kQ9zX';

interface TokenEndpoint {
  url: string;
  calls: { authorization: string | undefined; form: URLSearchParams }[];
  /** What the next answers are: a token lifetime, or a failure status. */
  expiresIn: number;
  fail: number | undefined;
  delayMs: number;
}

/** A real OAuth2 token endpoint (client-credentials grant) that counts its calls. */
async function startTokenEndpoint(): Promise<TokenEndpoint> {
  const state: TokenEndpoint = { url: '', calls: [], expiresIn: 3600, fail: undefined, delayMs: 0 };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const form = new URLSearchParams(body);
      state.calls.push({ authorization: req.headers.authorization, form });
      const n = state.calls.length;
      setTimeout(() => {
        if (state.fail !== undefined) {
          res.writeHead(state.fail, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_client', error_description: `bad secret ${SECRET}` }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: `tok-${n}`, token_type: 'Bearer', expires_in: state.expiresIn }));
      }, state.delayMs);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/oauth/token`;
  onCleanup(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return state;
}

const config = (upstreamUrl: string, credentials: string) => `
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams:
  pay:
    endpoints: [${upstreamUrl}]
    credentials: ${credentials}
routes: [{ name: payments, listener: out, match: { pathPrefix: / }, upstream: pay }]
`;

const oauth2 = (tokenUrl: string, extra = '') =>
  `{ oauth2: { tokenUrl: ${tokenUrl}, clientId: store, clientSecret: "\${env:CS}", scopes: [payments, refunds]${extra} } }`;

describe('outbound credentials', () => {
  it('fetches one OAuth2 token for many concurrent requests and replaces the client Authorization', async () => {
    const idp = await startTokenEndpoint();
    idp.delayMs = 200;
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, oauth2(idp.url, ', audience: https://api.pay.example')), { env: { CS: SECRET } });
    const answers = await Promise.all(Array.from({ length: 20 }, () => g.fetch('out', '/charges', { headers: { authorization: 'Bearer client-own' } })));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(idp.calls).toHaveLength(1);
    expect(up.received.every((r) => r.headers.authorization === 'Bearer tok-1')).toBe(true);
    expect(up.received.every((r) => r.rawHeaders.filter((h) => h.toLowerCase() === 'authorization').length === 1)).toBe(true);
    const call = idp.calls[0]!;
    expect(call.authorization).toBe(`Basic ${Buffer.from(`store:${SECRET}`).toString('base64')}`);
    expect(call.form.get('grant_type')).toBe('client_credentials');
    expect(call.form.get('scope')).toBe('payments refunds');
    expect(call.form.get('audience')).toBe('https://api.pay.example');
    expect(call.form.get('client_secret')).toBeNull();
  });

  it('sends the client secret in the form with authMethod: post', async () => {
    const idp = await startTokenEndpoint();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, oauth2(idp.url, ', authMethod: post')), { env: { CS: SECRET } });
    expect((await g.fetch('out', '/x')).status).toBe(200);
    expect(idp.calls[0]!.authorization).toBeUndefined();
    expect(idp.calls[0]!.form.get('client_id')).toBe('store');
    expect(idp.calls[0]!.form.get('client_secret')).toBe(SECRET);
  });

  it('refreshes the token shortly before it expires', async () => {
    const idp = await startTokenEndpoint();
    idp.expiresIn = 1;
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, oauth2(idp.url)), { env: { CS: SECRET } });
    expect((await g.fetch('out', '/x')).json().headers.authorization).toBe('Bearer tok-1');
    expect((await g.fetch('out', '/x')).json().headers.authorization).toBe('Bearer tok-1');
    expect(idp.calls).toHaveLength(1);
    await eventually(async () => (await g.fetch('out', '/x')).json().headers.authorization === 'Bearer tok-2', 5_000, 100);
  });

  it('on an upstream 401 refreshes the token once and replays a request without a body', async () => {
    const idp = await startTokenEndpoint();
    const up = await startUpstream((req, res) => {
      if (req.headers.authorization === 'Bearer tok-1') res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end('revoked');
      else res.writeHead(200).end(`ok ${req.headers.authorization}`);
    });
    const g = await startGatehouse(config(up.url, oauth2(idp.url)), { env: { CS: SECRET } });
    const res = await g.fetch('out', '/x');
    expect(res.status).toBe(200);
    expect(res.text).toBe('ok Bearer tok-2');
    expect(idp.calls).toHaveLength(2);
    expect(up.received).toHaveLength(2);
    expect(g.accessLog.json.at(-1)).toMatchObject({ status: 200, attempts: 2 });
  });

  it('passes a 401 through for a streamed body it cannot replay, and the next request gets a fresh token', async () => {
    const idp = await startTokenEndpoint();
    const up = await startUpstream((req, res) => {
      if (req.headers.authorization === 'Bearer tok-1') res.writeHead(401).end('revoked');
      else res.writeHead(200).end('ok');
    });
    // a body larger than limits.bufferBodies streams to the upstream: it cannot be sent twice
    const yaml = config(up.url, oauth2(idp.url)).replace('address: 127.0.0.1:0 }', 'address: 127.0.0.1:0, limits: { bufferBodies: 4b } }');
    const g = await startGatehouse(yaml, { env: { CS: SECRET } });
    const res = await g.fetch('out', '/charges', { method: 'POST', body: 'amount=100' });
    expect(res.status).toBe(401);
    expect(up.received).toHaveLength(1);
    const next = await g.fetch('out', '/charges', { method: 'POST', body: 'amount=100' });
    expect(next.status).toBe(200);
    expect(idp.calls).toHaveLength(2);
  });

  it('answers 503 auth_unavailable when the token endpoint is unreachable, and 502 when it refuses the client', async () => {
    const up = await startUpstream(echo);
    const down = await startGatehouse(config(up.url, oauth2('http://127.0.0.1:9/oauth/token')), { env: { CS: SECRET } });
    const res = await down.fetch('out', '/x');
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('auth_unavailable');
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()).toMatchObject({ code: 'auth_unavailable', route: 'payments' });
    expect(res.json().detail).toContain("cannot get an OAuth2 token for upstream 'pay'");

    const idp = await startTokenEndpoint();
    idp.fail = 401;
    const refused = await startGatehouse(config(up.url, oauth2(idp.url)), { env: { CS: SECRET } });
    const res2 = await refused.fetch('out', '/x');
    expect(res2.status).toBe(502);
    expect(res2.headers['gatehouse-error']).toBe('bad_gateway');
    expect(res2.json().detail).toContain('refused gatehouse\'s client credentials (HTTP 401, invalid_client)');
    expect(res2.text).not.toContain(SECRET);
    expect(refused.log.all).toContain('OAuth2 token fetch failed');
    expect(refused.log.all).not.toContain(SECRET);
    expect(up.received).toHaveLength(0);
  });

  it('adds a static header credential and replaces the client copy', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, '{ header: { name: X-Api-Key, value: "${env:KEY}" } }'), { env: { KEY: 'sk_test_abc' } });
    const res = await g.fetch('out', '/x', { headers: { 'x-api-key': 'forged' } });
    expect(res.json().headers['x-api-key']).toBe('sk_test_abc');
    expect(up.received[0]!.rawHeaders.filter((h) => h.toLowerCase() === 'x-api-key')).toHaveLength(1);
  });
});
