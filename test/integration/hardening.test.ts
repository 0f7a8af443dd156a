import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { request } from '../helpers/http.js';
import { sendRaw, statusOf } from '../helpers/raw.js';
import { echo, startUpstream, type Upstream } from '../helpers/upstream.js';

const bodyOf = (text: string) => JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));

async function setup(listenerExtra = ''): Promise<{ g: TestGatehouse; up: Upstream; port: number }> {
  const up = await startUpstream(echo);
  const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 ${listenerExtra} }]
upstreams: { app: { endpoints: [${up.url}] } }
routes:
  - { name: api, listener: in, match: { pathPrefix: /api }, upstream: app }
`);
  return { g, up, port: g.gh.listenerAddress('in')!.port };
}

describe('admin token', () => {
  it('guards /admin/* with a constant-time bearer check and leaves /healthz and /metrics open', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(
      `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0, token: "\${env:ADMIN}" }
upstreams: { app: { endpoints: [${up.url}] } }
`,
      { env: { ADMIN: 'adm-0123456789' } },
    );
    const none = await request(g.admin('/admin/config'));
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toContain('Bearer');
    expect((await request(g.admin('/admin/config'), { headers: { authorization: 'Bearer adm-0123456788' } })).status).toBe(401);
    expect((await request(g.admin('/admin/config'), { headers: { authorization: 'Bearer adm-0123' } })).status).toBe(401);
    expect((await request(g.admin('/admin/config'), { headers: { authorization: 'Bearer ' } })).status).toBe(401);
    const ok = await request(g.admin('/admin/config'), { headers: { authorization: 'Bearer adm-0123456789' } });
    expect(ok.status).toBe(200);
    expect(ok.json().config.admin.token).toBe('***');
    expect((await request(g.admin('/healthz'))).status).toBe(200);
    expect((await request(g.admin('/metrics'))).status).toBe(200);
  });
});

describe('request limits', () => {
  it('answers 431 headers_too_large for more header fields than limits.maxHeaders', async () => {
    const { g, up } = await setup(', limits: { maxHeaders: 20 }');
    const headers: Record<string, string> = {};
    for (let i = 0; i < 25; i++) headers[`x-h${i}`] = 'v';
    const res = await g.fetch('in', '/api/x', { headers });
    expect(res.status).toBe(431);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('headers_too_large');
    expect(res.json()).toMatchObject({ code: 'headers_too_large', status: 431 });
    expect(up.received).toHaveLength(0);
    const fewer: Record<string, string> = {};
    for (let i = 0; i < 10; i++) fewer[`x-h${i}`] = 'v';
    expect((await g.fetch('in', '/api/x', { headers: fewer })).status).toBe(200);
  });

  it('answers 431 headers_too_large for headers larger than limits.maxHeaderSize', async () => {
    const { port, up } = await setup(', limits: { maxHeaderSize: 4kb }');
    const { text } = await sendRaw(port, [`GET /api/x HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(6000)}\r\n\r\n`]);
    expect(statusOf(text)).toBe(431);
    expect(text).toContain('content-type: application/problem+json');
    expect(text).toContain('gatehouse-error: headers_too_large');
    expect(bodyOf(text)).toMatchObject({ code: 'headers_too_large' });
    expect(up.received).toHaveLength(0);
  });

  it('answers 408 and closes a connection whose headers trickle in slower than limits.headersTimeout (slowloris)', async () => {
    const { port, up } = await setup(', limits: { headersTimeout: 1s, requestTimeout: 2s }');
    const pieces: (string | { waitMs: number })[] = ['GET /api/x HTTP/1.1\r\nHost: a\r\n'];
    for (let i = 0; i < 20; i++) pieces.push({ waitMs: 250 }, `X-Slow-${i}: 1\r\n`);
    const { text, ms } = await sendRaw(port, pieces);
    expect(statusOf(text)).toBe(408);
    expect(text).toContain('gatehouse-error: request_timeout');
    expect(ms).toBeGreaterThan(900);
    expect(ms).toBeLessThan(4_000);
    expect(up.received).toHaveLength(0);
  });

  it('closes a connection whose body trickles in slower than limits.requestTimeout', async () => {
    const { port } = await setup(', limits: { headersTimeout: 1s, requestTimeout: 1500ms }');
    const pieces: (string | { waitMs: number })[] = ['POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n'];
    for (let i = 0; i < 30; i++) pieces.push({ waitMs: 200 }, 'a');
    const { ms } = await sendRaw(port, pieces);
    expect(ms).toBeGreaterThan(1_400);
    expect(ms).toBeLessThan(4_500);
  });
});

describe('ambiguous framing', () => {
  it.each([
    ['both Content-Length and Transfer-Encoding', 'POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['two different Content-Length values', 'POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'],
    ['chunked not last', 'POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
    ['whitespace before the colon', 'POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n'],
    ['a negative Content-Length', 'POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n'],
    ['bare LF line endings', 'POST /api/x HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc'],
  ])('refuses a request with %s with 400 and forwards nothing', async (_name, bytes) => {
    const { port, up } = await setup();
    const { text } = await sendRaw(port, [bytes]);
    expect(statusOf(text)).toBe(400);
    expect(text).toContain('content-type: application/problem+json');
    expect(text).toContain('gatehouse-error: bad_request');
    expect(text).toContain('connection: close');
    expect(up.received).toHaveLength(0);
  });

  it('refuses a request with two Host headers', async () => {
    const { port, up } = await setup();
    const { text } = await sendRaw(port, ['GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n']);
    expect(statusOf(text)).toBe(400);
    expect(bodyOf(text.slice(text.indexOf('{') - 4))).toMatchObject({ code: 'bad_request', detail: 'the request has more than one Host header' });
    expect(up.received).toHaveLength(0);
  });
});

describe('normalised-path routing', () => {
  it('matches routes on the normalised path: no /api/../admin bypass, encoded slashes stay data', async () => {
    const admin = await startUpstream(echo);
    const api = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { api: { endpoints: [${api.url}] }, admin: { endpoints: [${admin.url}] } }
routes:
  - { name: admin, listener: in, match: { pathPrefix: /admin, headers: { x-staff: "yes" } }, upstream: admin }
  - { name: api, listener: in, match: { pathPrefix: /api }, upstream: api }
`);
    const port = g.gh.listenerAddress('in')!.port;
    const send = async (path: string) => statusOf((await sendRaw(port, [`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`])).text);
    expect(await send('/api/../admin/users')).toBe(404);
    expect(await send('/api/%2e%2e/admin/users')).toBe(404);
    expect(await send('/api/..%2Fadmin/users')).toBe(400);
    expect(await send('/api/..\\admin/users')).toBe(400);
    expect(admin.received).toHaveLength(0);
    expect(await send('/%61pi/./orders')).toBe(200);
    expect(await send('/api/files/a%2Fb')).toBe(200);
    expect(api.received.map((r) => r.url)).toEqual(['/api/orders', '/api/files/a%2Fb']);
  });
});
