import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { sendRaw, statusOf } from '../helpers/raw.js';
import { makeKey, sign } from '../helpers/jwks.js';
import { randomPath, seeded } from '../helpers/paths.js';
import { echo, startUpstream, type Upstream } from '../helpers/upstream.js';

/*
 * SPEC §3.1 against raw sockets: what a hostile request target, Host, framing or body gets, and
 * that the upstream receives nothing of a refused request.
 */

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
const codeOf = (text: string) => /gatehouse-error: ([a-z_]+)/i.exec(text)?.[1];

/** The README's usual layout: a JWT route that forwards the subject, before a public catch-all. */
async function storeLayout(extraListener = ''): Promise<{ g: TestGatehouse; up: Upstream; port: number; token: string }> {
  const key = await makeKey('k1');
  const jwks = join(mkdtempSync(join(tmpdir(), 'gatehouse-jwks-')), 'jwks.json');
  writeFileSync(jwks, JSON.stringify({ keys: [key.publicJwk] }));
  const up = await startUpstream(echo);
  const g = await startGatehouse(
    `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 ${extraListener} }]
upstreams: { app: { endpoints: [${up.url}] } }
routes:
  - name: account
    listener: in
    match: { path: /account }
    upstream: app
    jwt: { jwks: ${jwks}, issuer: https://id.example, forwardClaims: { sub: x-user-id } }
  - name: orders
    listener: in
    match: { pathRegex: "/orders/[0-9]+" }
    upstream: app
    jwt: { jwks: ${jwks}, issuer: https://id.example, forwardClaims: { sub: x-user-id } }
  - name: admin
    listener: in
    match: { pathPrefix: /admin, host: admin.example.com }
    upstream: app
    jwt: { jwks: ${jwks}, issuer: https://id.example }
  - { name: public, listener: in, match: { pathPrefix: / }, upstream: app }
`,
    { files: { 'jwks.json': JSON.stringify({ keys: [key.publicJwk] }) } },
  );
  // the loader resolves ${jwks} against the working directory: give it the absolute file
  const token = await sign(key, { iss: 'https://id.example', sub: 'alice' });
  return { g, up, port: g.gh.listenerAddress('in')!.port, token };
}

describe('request targets (F1)', () => {
  it.each([
    ['/account#', 'a fragment'],
    ['/account#x', 'a fragment'],
    ['/account?x=1#y', 'a fragment after the query'],
    ['/account\\', 'a backslash'],
    ['/acc\\ount', 'a backslash'],
    ['/orders/1#', 'a fragment behind a pathRegex'],
    ['/account%00', 'an escaped NUL'],
    ['/account%0d%0aX-Injected:%201', 'escaped CR LF'],
  ])('answers 400 bad_request to %s (%s) and forwards nothing, whatever x-user-id the client sends', async (target) => {
    const { port, up } = await storeLayout();
    const { text } = await sendRaw(port, [`GET ${target} HTTP/1.1\r\nHost: shop\r\nx-user-id: admin\r\nConnection: close\r\n\r\n`]);
    expect(statusOf(text)).toBe(400);
    expect(codeOf(text)).toBe('bad_request');
    expect(text).toMatch(/x-request-id: \S+/);
    expect(up.received).toHaveLength(0);
  });

  it('never lets a client set a header a JWT route asserts, on any route of the config', async () => {
    const { g, up, token } = await storeLayout();
    const pub = await g.fetch('in', '/public', { headers: { 'x-user-id': 'admin', 'X-User-Id': 'root' } });
    expect(pub.status).toBe(200);
    expect(pub.json().headers['x-user-id']).toBeUndefined();
    const account = await g.fetch('in', '/account', { headers: { authorization: `Bearer ${token}`, 'x-user-id': 'admin' } });
    expect(account.status).toBe(200);
    expect(account.json().headers['x-user-id']).toBe('alice');
    expect(up.received).toHaveLength(2);
  });

  it('still routes what normalises to a protected path to that route: /%61ccount and /x/../account need the token', async () => {
    const { port, up } = await storeLayout();
    for (const target of ['/%61ccount', '/x/../account', '/x/%2e%2e/account', '/./account']) {
      const { text } = await sendRaw(port, [`GET ${target} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n`]);
      expect(statusOf(text), target).toBe(401);
    }
    expect(up.received).toHaveLength(0);
  });
});

describe('route patterns run in linear time (F2)', () => {
  it('refuses patterns that need backtracking at load, and /(a+)+ against 30 as and ! answers at once', async () => {
    const up = await startUpstream(echo);
    await expect(
      startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathRegex: "/(a)\\\\1" }, upstream: app }]
`),
    ).rejects.toThrow(/routes\[0\]\(r\)\.match\.pathRegex: must be an RE2 regular expression/);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathRegex: "/(a+)+" }, upstream: app }]
`);
    const started = performance.now();
    const evil = await g.fetch('in', '/' + 'a'.repeat(5_000) + '!');
    expect(evil.status).toBe(404);
    expect((await g.fetch('in', '/aaaa')).status).toBe(200);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe('Host (F3, F13)', () => {
  it('matches a host route with one trailing dot removed, in any case', async () => {
    const { port, token, up } = await storeLayout();
    for (const host of ['ADMIN.example.com.', 'admin.example.com.:8080']) {
      const { text } = await sendRaw(port, [`GET /admin/users HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`]);
      expect(statusOf(text), host).toBe(401);
      const ok = await sendRaw(port, [`GET /admin/users HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`]);
      expect(statusOf(ok.text), host).toBe(200);
    }
    expect(up.received).toHaveLength(2);
  });

  it.each([['admin.example.com@evil'], ['admin%2eexample.com'], ['a b'], ['admin.example.com:80:80'], ['[::1']])('answers 400 bad_request to Host %s', async (host) => {
    const { port, up } = await storeLayout();
    const { text } = await sendRaw(port, [`GET /admin/x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`]);
    expect(statusOf(text)).toBe(400);
    expect(codeOf(text)).toBe('bad_request');
    expect(up.received).toHaveLength(0);
  });

  it('answers an HTTP/1.1 request without Host with problem+json and x-request-id, and takes HTTP/1.0 without one', async () => {
    const { port, up } = await storeLayout();
    const { text } = await sendRaw(port, ['GET /public HTTP/1.1\r\nConnection: close\r\n\r\n']);
    expect(statusOf(text)).toBe(400);
    expect(text).toContain('application/problem+json');
    expect(text).toMatch(/x-request-id: \S+/);
    expect(up.received).toHaveLength(0);
    const old = await sendRaw(port, ['GET /public HTTP/1.0\r\n\r\n']);
    expect(statusOf(old.text.replace('HTTP/1.0', 'HTTP/1.1'))).toBe(200);
    expect(up.received).toHaveLength(1);
  });
});

describe('framing (F7, F11, F12, F15)', () => {
  it('processes nothing pipelined behind a refused request with a body: the upstream never sees the checkout', async () => {
    const { port, up } = await storeLayout();
    // a token that takes a verification (a turn of the event loop) before its 401, and none at all
    const forged = await sign(await makeKey('k1'), { iss: 'https://id.example', sub: 'mallory' });
    for (const auth of [`Authorization: Bearer ${forged}\r\n`, '']) {
      for (let i = 0; i < 5; i++) {
        const { text } = await sendRaw(port, [
          `POST /account HTTP/1.1\r\nHost: shop\r\n${auth}Content-Length: 5\r\n\r\nhello` +
            'POST /checkout HTTP/1.1\r\nHost: shop\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\norder=1',
        ]);
        expect(statuses(text)).toEqual([401]);
        expect(text).toMatch(/connection: close/i);
      }
    }
    expect(up.received).toHaveLength(0);
  });

  it('answers pipelined requests one after the other, in order, on a kept-alive connection', async () => {
    const { port, up } = await storeLayout();
    const { text } = await sendRaw(port, ['GET /public/1 HTTP/1.1\r\nHost: shop\r\n\r\nGET /public/2 HTTP/1.1\r\nHost: shop\r\n\r\nGET /public/3 HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n']);
    expect(statuses(text)).toEqual([200, 200, 200]);
    expect([...text.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1])).toEqual(['/public/1', '/public/2', '/public/3']);
    expect(up.received.map((r) => r.url)).toEqual(['/public/1', '/public/2', '/public/3']);
  });

  it('answers Expect: 100-continue with the refusal instead of 100 when a check fails, and with 100 once they pass', async () => {
    const { port, up, token } = await storeLayout();
    const refused = await sendRaw(port, ['POST /account HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n', { waitMs: 300 }, 'hello']);
    expect(statuses(refused.text)).toEqual([401]);
    expect(refused.text).not.toContain('100 Continue');
    const passed = await sendRaw(port, [`POST /account HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer ${token}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`, { waitMs: 300 }, 'hello']);
    expect(passed.text.startsWith('HTTP/1.1 100 Continue')).toBe(true);
    expect(statuses(passed.text)).toEqual([100, 200]);
    expect(up.received.map((r) => r.body.toString())).toEqual(['hello']);
  });

  it('answers 413 from Content-Length before sending 100 Continue', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app, maxBodySize: 10b }]
`);
    const { text } = await sendRaw(g.gh.listenerAddress('in')!.port, ['POST /x HTTP/1.1\r\nHost: shop\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n']);
    expect(statuses(text)).toEqual([413]);
    expect(up.received).toHaveLength(0);
  });

  it.each([['gzip, chunked'], ['gzip\r\nTransfer-Encoding: chunked'], ['identity, chunked'], ['gzip']])('answers 501 not_implemented to Transfer-Encoding: %s', async (te) => {
    const { port, up } = await storeLayout();
    const { text } = await sendRaw(port, [`POST /public HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: ${te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`]);
    expect(statusOf(text)).toBe(501);
    expect(codeOf(text)).toBe('not_implemented');
    expect(up.received).toHaveLength(0);
  });

  it('drops header names with an underscore unless limits.allowUnderscoreHeaders is on', async () => {
    const { g, token } = await storeLayout();
    const res = await g.fetch('in', '/account', { headers: { authorization: `Bearer ${token}`, x_user_id: 'admin', x_other: '1', 'x-kept': '1' } });
    expect(res.json().headers).toMatchObject({ 'x-user-id': 'alice', 'x-kept': '1' });
    expect(res.json().headers.x_user_id).toBeUndefined();
    expect(res.json().headers.x_other).toBeUndefined();
    const allowing = await storeLayout(', limits: { allowUnderscoreHeaders: true }');
    const kept = await allowing.g.fetch('in', '/public', { headers: { x_other: '1' } });
    expect(kept.json().headers.x_other).toBe('1');
  });
});

describe('slow bodies (F4)', () => {
  it('reads small bodies before taking an upstream connection: slow senders cannot hold the pool', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}], maxConnections: 2 } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const port = g.gh.listenerAddress('in')!.port;
    // ten senders each stalled half-way through a 1 KB body
    const slow: Socket[] = [];
    for (let i = 0; i < 10; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.write(`POST /slow HTTP/1.1\r\nHost: shop\r\nContent-Length: 1024\r\n\r\n${'x'.repeat(512)}`);
      slow.push(s);
    }
    await new Promise((r) => setTimeout(r, 200));
    const started = performance.now();
    const res = await g.fetch('in', '/fast', { method: 'POST', body: 'ok' });
    expect(res.status).toBe(200);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(up.received.map((r) => r.url)).toEqual(['/fast']);
    for (const s of slow) s.destroy();
  });

  it('answers 408 request_timeout when the body stops arriving for limits.bodyTimeout, and the upstream gets nothing', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, limits: { bodyTimeout: 500ms } }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const { text, ms } = await sendRaw(g.gh.listenerAddress('in')!.port, ['POST /x HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\nabc']);
    expect(statusOf(text)).toBe(408);
    expect(codeOf(text)).toBe('request_timeout');
    expect(text).toMatch(/connection: close/i);
    expect(ms).toBeGreaterThanOrEqual(450);
    expect(ms).toBeLessThan(2_000);
    expect(up.received).toHaveLength(0);
  });

  it('lets a slow but steady upload of a large body through: the timeout is between bytes, not for the whole body', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, limits: { bodyTimeout: 400ms, bufferBodies: 1kb } }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const pieces: (string | { waitMs: number })[] = ['POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 8000\r\nConnection: close\r\n\r\n'];
    for (let i = 0; i < 8; i++) pieces.push('y'.repeat(1000), { waitMs: 200 });
    const { text } = await sendRaw(g.gh.listenerAddress('in')!.port, pieces);
    expect(statusOf(text)).toBe(200);
    await eventually(() => up.received.length === 1);
    expect(up.received[0]!.body.length).toBe(8000);
  });

  it('streams a chunked body larger than limits.bufferBodies whole and in order', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, limits: { bufferBodies: 1kb } }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const chunks = Array.from({ length: 10 }, (_, i) => String(i).repeat(700));
    const pieces = ['POST /c HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n', ...chunks.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`), '0\r\n\r\n'];
    const { text } = await sendRaw(g.gh.listenerAddress('in')!.port, pieces);
    expect(statusOf(text)).toBe(200);
    expect(up.received[0]!.body.toString()).toBe(chunks.join(''));
    const small = await request(g.url('in') + '/s', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: 'tiny' });
    expect(small.json().body).toBe('tiny');
  });
});

describe('the path a route matched is the path the upstream reads (property)', () => {
  it('for generated targets, routes by the path a WHATWG parser reads from what the upstream receives, or refuses', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes:
  - { name: admin, listener: in, match: { pathPrefix: /api }, upstream: app, headers: { request: { set: { x-route: admin } } } }
  - { name: public, listener: in, match: { pathPrefix: / }, upstream: app, headers: { request: { set: { x-route: public } } } }
`);
    const port = g.gh.listenerAddress('in')!.port;
    const seed = 61206;
    const rand = seeded(seed);
    let forwarded = 0;
    for (let i = 0; i < 400; i++) {
      const target = randomPath(rand) + (rand() < 0.2 ? '?q=1' : '');
      const before = up.received.length;
      const { text } = await sendRaw(port, [`GET ${target} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n`]);
      const status = statusOf(text);
      if (status === 400) {
        expect(up.received.length, target).toBe(before);
        continue;
      }
      expect(status, `seed ${seed}: ${target} -> ${text.slice(0, 120)}`).toBe(200);
      forwarded++;
      const got = up.received[before]!;
      const url = new URL(got.url, 'http://h');
      const path = got.url.split('?')[0]!;
      expect(url.pathname, `seed ${seed}: ${target} forwarded as ${got.url}`).toBe(path);
      const wanted = path === '/api' || path.startsWith('/api/') ? 'admin' : 'public';
      expect(got.headers['x-route'], `seed ${seed}: ${target} forwarded as ${got.url}`).toBe(wanted);
    }
    expect(forwarded).toBeGreaterThan(40);
  }, 60_000);
});

describe('connection limits', () => {
  it('refuses connections beyond limits.maxConnections at accept, and takes new ones once others close', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, limits: { maxConnections: 5 } }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const port = g.gh.listenerAddress('in')!.port;
    const held: Socket[] = [];
    for (let i = 0; i < 5; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      held.push(s);
    }
    await new Promise((r) => setTimeout(r, 100));
    const { text } = await sendRaw(port, ['GET /x HTTP/1.1\r\nHost: shop\r\n\r\n'], 3_000);
    expect(text).toBe(''); // closed at accept, unanswered
    for (const s of held) s.destroy();
    await eventually(async () => (await request(g.url('in') + '/x')).status === 200);
  });
});
