import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportSPKI, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, webSocketRoundTrip } from '../helpers/http.js';
import { makeKey, sign, startJwksServer, type SigningKey } from '../helpers/jwks.js';
import { echo, startUpstream } from '../helpers/upstream.js';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

let rsa: SigningKey;
let ec: SigningKey;
beforeAll(async () => {
  [rsa, ec] = await Promise.all([makeKey('rsa-1', 'RS256'), makeKey('ec-1', 'ES256')]);
});

async function setup(jwtYaml: string, keys: SigningKey[] = [rsa, ec]) {
  const idp = await startJwksServer(keys);
  const up = await startUpstream(echo);
  const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes:
  - name: api
    listener: in
    match: { pathPrefix: /api }
    upstream: app
    websocket: true
    jwt:
${jwtYaml.replaceAll('$JWKS', idp.jwksUri).replaceAll('$ISSUER', idp.issuer).trim().split('\n').map((l) => `      ${l}`).join('\n')}
`);
  const get = (token?: string, headers: Record<string, string> = {}) =>
    g.fetch('in', '/api/orders', { headers: token === undefined ? headers : { authorization: `Bearer ${token}`, ...headers } });
  return { idp, up, g, get };
}

function expectProblem(res: { status: number; headers: Record<string, unknown>; json(): any }, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['gatehouse-error']).toBe(code);
  expect(res.json()).toMatchObject({ type: `urn:gatehouse:error:${code}`, status, code, route: 'api' });
}

const BASIC = `
jwksUri: $JWKS
issuer: https://idp.example/
audiences: [store-api]
algorithms: [RS256, ES256]
clockTolerance: 0s
`;
const good = { iss: 'https://idp.example/', aud: 'store-api', sub: 'alice' };

describe('JWT validation', () => {
  it('accepts a valid RS256 and ES256 token, forwards claims and strips spoofed copies', async () => {
    const { up, get } = await setup(`${BASIC}forwardClaims: { sub: x-user-id, tenant: x-tenant-id }`);
    const res = await get(await sign(rsa, { ...good, tenant: 'acme' }), { 'x-user-id': 'mallory', 'X-Tenant-Id': 'evil' });
    expect(res.status).toBe(200);
    const seen = res.json().headers;
    expect(seen['x-user-id']).toBe('alice');
    expect(seen['x-tenant-id']).toBe('acme');
    expect(up.received[0]!.rawHeaders.filter((h) => h.toLowerCase() === 'x-user-id')).toHaveLength(1);

    // a token without the claim: the spoofed header is still removed, none is added
    const res2 = await get(await sign(ec, good), { 'x-tenant-id': 'evil' });
    expect(res2.status).toBe(200);
    expect(res2.json().headers['x-tenant-id']).toBeUndefined();
    expect(res2.json().headers['x-user-id']).toBe('alice');
  });

  it('answers 401 with a bare Bearer challenge when no token is sent (RFC 6750 §3.1)', async () => {
    const { up, get, g } = await setup(BASIC);
    const res = await get();
    expectProblem(res, 401, 'unauthorized');
    expect(res.headers['www-authenticate']).toBe('Bearer');
    const basic = await get(undefined, { authorization: 'Basic YTpi' });
    expect(basic.headers['www-authenticate']).toBe('Bearer');
    expect(up.received).toHaveLength(0);
    expect(g.accessLog.json.at(-1)).toMatchObject({ status: 401, error: 'unauthorized' });
  });

  it.each([
    ['expired', async () => sign(rsa, { ...good, exp: now() - 60 }), 'the token has expired'],
    ['not yet valid', async () => sign(rsa, { ...good, nbf: now() + 600 }), 'the token is not valid yet'],
    ['wrong issuer', async () => sign(rsa, { ...good, iss: 'https://evil.example/' }), 'the token was issued by an issuer that is not accepted'],
    ['wrong audience', async () => sign(rsa, { ...good, aud: 'other-api' }), 'the token is for an audience that is not accepted'],
    ['without exp', async () => sign(rsa, { ...good, exp: undefined }), 'the token has no exp claim'],
    ['alg none', () => Promise.resolve(`${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...good, exp: now() + 60 })}.`), "the token's signing algorithm is not accepted"],
    [
      'HS256 signed with the RSA public key (algorithm confusion)',
      async () => {
        const pem = await exportSPKI(await (await import('jose')).importJWK(rsa.publicJwk, 'RS256', { extractable: true }) as any);
        return new SignJWT({ ...good, exp: now() + 60 }).setProtectedHeader({ alg: 'HS256', kid: rsa.kid }).sign(new TextEncoder().encode(pem));
      },
      "the token's signing algorithm is not accepted",
    ],
    [
      'tampered payload',
      async () => {
        const [h, , s] = (await sign(rsa, good)).split('.');
        return `${h}.${b64({ ...good, sub: 'admin', exp: now() + 60 })}.${s}`;
      },
      "the token's signature is invalid",
    ],
    ['signed by an unknown key', async () => sign(await makeKey('stranger', 'RS256'), good), 'no known key matches the token'],
    ['not a JWT', () => Promise.resolve('abc.def'), 'the token is malformed'],
  ])('answers 401 invalid_token for a token %s', async (_name, make, description) => {
    const { up, get } = await setup(BASIC);
    const token = await make();
    const res = await get(token);
    expectProblem(res, 401, 'unauthorized');
    expect(res.headers['www-authenticate']).toBe(`Bearer error="invalid_token", error_description="${description}"`);
    expect(res.json().detail).toBe(description);
    expect(res.text).not.toContain(token.split('.')[1] || token);
    expect(up.received).toHaveLength(0);
  });

  it('answers 401 invalid_token for a malformed Authorization header', async () => {
    const { get } = await setup(BASIC);
    for (const value of ['Bearer', 'Bearer two words', 'Bearer "quoted"']) {
      const res = await get(undefined, { authorization: value });
      expectProblem(res, 401, 'unauthorized');
      expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token", error_description="the bearer token is malformed"');
    }
  });

  it('answers 403 insufficient_scope when a required scope is missing; scope and scp both count', async () => {
    const { get } = await setup(`${BASIC}requiredScopes: [checkout:write, orders:read]`);
    const res = await get(await sign(rsa, { ...good, scope: 'orders:read profile' }));
    expectProblem(res, 403, 'forbidden');
    expect(res.headers['www-authenticate']).toBe(
      'Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="checkout:write orders:read"',
    );
    expect((await get(await sign(rsa, { ...good, scope: 'orders:read checkout:write' }))).status).toBe(200);
    expect((await get(await sign(rsa, { ...good, scp: ['checkout:write', 'orders:read'] }))).status).toBe(200);
  });

  it('answers 403 when a required claim does not have its exact value', async () => {
    const { get } = await setup(`${BASIC}requiredClaims: { tenant: acme, email_verified: true }`);
    expectProblem(await get(await sign(rsa, { ...good, tenant: 'other', email_verified: true })), 403, 'forbidden');
    expectProblem(await get(await sign(rsa, { ...good, tenant: 'acme', email_verified: 'true' })), 403, 'forbidden');
    expect((await get(await sign(rsa, { ...good, tenant: 'acme', email_verified: true }))).status).toBe(200);
  });

  it('reads the token from a named header or a cookie', async () => {
    const a = await setup(`${BASIC}from: { header: x-token }`);
    expect((await a.get(undefined, { 'x-token': await sign(rsa, good) })).status).toBe(200);
    expect((await a.get(await sign(rsa, good))).status).toBe(401); // Authorization is not looked at
    const b = await setup(`${BASIC}from: { cookie: session }`);
    expect((await b.get(undefined, { cookie: `theme=dark; session=${await sign(rsa, good)}` })).status).toBe(200);
    expect((await b.get(undefined, { cookie: 'theme=dark' })).headers['www-authenticate']).toBe('Bearer');
  });

  it('accepts a rotated key after refetching the JWKS, and rejects a removed one once the cache expires', async () => {
    const { idp, get } = await setup(`${BASIC}jwksCache: { maxAge: 300ms, cooldown: 100ms }`);
    const oldToken = await sign(rsa, good);
    expect((await get(oldToken)).status).toBe(200);
    const rotated = await makeKey('rsa-2', 'RS256');
    idp.keys = [rotated, ec];
    const fetchesBefore = idp.fetches.jwks;
    await eventually(async () => (await get(await sign(rotated, good))).status === 200, 5_000, 150);
    expect(idp.fetches.jwks).toBeGreaterThan(fetchesBefore);
    await eventually(async () => (await get(oldToken)).status === 401, 5_000, 150);
    expect((await get(oldToken)).headers['www-authenticate']).toContain('no known key matches the token');
  });

  it('keeps verifying with the cached keys while the JWKS endpoint is down, and answers 503 auth_unavailable for an unknown kid', async () => {
    const { idp, get } = await setup(`${BASIC}cacheSize: 0\njwksCache: { maxAge: 200ms, cooldown: 5s }`);
    expect((await get(await sign(rsa, good))).status).toBe(200);
    idp.down = true;
    await new Promise((r) => setTimeout(r, 300)); // let the cached key set pass its maxAge
    expect((await get(await sign(rsa, good))).status).toBe(200);
    expect((await get(await sign(ec, good))).status).toBe(200);
    const res = await get(await sign(await makeKey('new-kid', 'RS256'), good));
    expectProblem(res, 503, 'auth_unavailable');
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });

  it('answers 503 auth_unavailable when the JWKS was never fetched and the endpoint is down', async () => {
    const { idp, get } = await setup(BASIC);
    idp.down = true;
    const res = await get(await sign(rsa, good));
    expectProblem(res, 503, 'auth_unavailable');
    expect(res.headers['retry-after']).toMatch(/^\d+$/);
  });

  it('finds the keys by OIDC discovery from the issuer when neither jwksUri nor jwks is given', async () => {
    const { idp, get } = await setup(`issuer: $ISSUER\naudiences: [store-api]`);
    const res = await get(await sign(rsa, { ...good, iss: idp.issuer }));
    expect(res.status).toBe(200);
    expect((await get(await sign(ec, { ...good, iss: idp.issuer }))).status).toBe(200);
    expect(idp.fetches.discovery).toBe(1);
    expect(idp.fetches.jwks).toBe(1);
  });

  it('verifies with a local JWKS file', async () => {
    const up = await startUpstream(echo);
    const g0 = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: api, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const file = join(g0.dir, 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: [ec.publicJwk] }));
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: api, listener: in, match: { pathPrefix: / }, upstream: app, jwt: { jwks: ${file}, algorithms: [ES256] } }]
`);
    const auth = async (key: SigningKey) => ({ authorization: `Bearer ${await sign(key, { sub: 'bob' })}` });
    expect((await g.fetch('in', '/x', { headers: await auth(ec) })).status).toBe(200);
    expect((await g.fetch('in', '/x', { headers: await auth(rsa) })).status).toBe(401);
  });

  it('counts decisions in gatehouse_auth_decisions_total{route,result}', async () => {
    const { get, g } = await setup(BASIC);
    await get(await sign(rsa, good));
    await get();
    await get(await sign(rsa, { ...good, exp: now() - 60 }));
    const text = await (await fetch(g.admin('/metrics'))).text();
    expect(text).toMatch(/gatehouse_auth_decisions_total\{route="api",result="allowed"\} 1/);
    expect(text).toMatch(/gatehouse_auth_decisions_total\{route="api",result="missing"\} 1/);
    expect(text).toMatch(/gatehouse_auth_decisions_total\{route="api",result="expired"\} 1/);
  });

  it('stops accepting a cached token once it expires', async () => {
    const { get } = await setup(BASIC);
    const token = await sign(rsa, { ...good, exp: now() + 2 });
    expect((await get(token)).status).toBe(200);
    expect((await get(token)).status).toBe(200); // from the verification cache
    await eventually(async () => (await get(token)).status === 401, 6_000, 200);
  });

  it('refuses a WebSocket upgrade without a valid token and relays one with it', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    onCleanup(() => new Promise((r) => wss.close(r)));
    const seen: string[] = [];
    wss.on('connection', (sock, req) => {
      seen.push(String(req.headers['x-user-id']));
      sock.on('message', (m) => sock.send(`echo:${(m as Buffer).toString()}`));
    });
    const idp = await startJwksServer([rsa]);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { ws: { endpoints: [http://127.0.0.1:${(wss.address() as any).port}] } }
routes:
  - { name: live, listener: in, match: { pathPrefix: /live }, upstream: ws, websocket: true,
      jwt: { jwksUri: ${idp.jwksUri}, forwardClaims: { sub: x-user-id } } }
`);
    const url = g.url('in').replace('http', 'ws') + '/live';
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(url);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
      ws.on('error', () => {});
    });
    expect(refused).toBe(401);
    const token = await sign(rsa, { sub: 'carol' });
    const reply = await webSocketRoundTrip(url, 'hi', { authorization: `Bearer ${token}`, 'x-user-id': 'mallory' });
    expect(reply).toBe('echo:hi');
    expect(seen).toEqual(['carol']);
  });
});
