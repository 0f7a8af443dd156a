import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { request } from '../helpers/http.js';
import { makeKey, sign, startJwksServer } from '../helpers/jwks.js';
import { sample, scrape } from '../helpers/metrics.js';
import { closedPort, echo, reply, startUpstream } from '../helpers/upstream.js';

const base = (upstream: string, route: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, trustedProxies: [127.0.0.1] }]
upstreams: { app: { endpoints: [${upstream}] } }
routes:
  - name: api
    listener: in
    match: { pathPrefix: / }
    upstream: app
${route}
`;

describe('quotas', () => {
  it('answers 429 rate_limited with Retry-After and both RateLimit headers once the bucket is empty', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(up.url, '    quota: [{ limit: 2, per: 10s }]'));
    const first = await g.fetch('in', '/x');
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"api-0";q=2;w=10');
    expect(first.headers.ratelimit).toBe('"api-0";r=1;t=5');
    const second = await g.fetch('in', '/x');
    expect(second.status).toBe(200);
    expect(second.headers.ratelimit).toBe('"api-0";r=0;t=10');

    const third = await g.fetch('in', '/x');
    expect(third.status).toBe(429);
    expect(third.headers['content-type']).toBe('application/problem+json');
    expect(third.headers['gatehouse-error']).toBe('rate_limited');
    expect(third.headers['retry-after']).toBe('5');
    expect(third.headers['ratelimit-policy']).toBe('"api-0";q=2;w=10');
    expect(third.headers.ratelimit).toBe('"api-0";r=0;t=10');
    expect(third.json()).toMatchObject({
      type: 'urn:gatehouse:error:rate_limited',
      status: 429,
      code: 'rate_limited',
      route: 'api',
      detail: "quota 'api-0' allows 2 requests per 10s; retry in 5s",
    });
    expect(up.received).toHaveLength(2);
    expect(g.accessLog.json.at(-1)).toMatchObject({ route: 'api', status: 429, error: 'rate_limited' });
  });

  it('paces a sub-second window: limit 1 per 500ms lets one request through every half second', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(up.url, '    quota: [{ limit: 1, per: 500ms }]'));
    const first = await g.fetch('in', '/x');
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"api-0";q=1;w=1'); // the window rounded up to whole seconds
    const started = performance.now();
    const second = await g.fetch('in', '/x');
    expect(second.status).toBe(429);
    expect(second.headers['retry-after']).toBe('1');
    expect(second.json().detail).toContain("quota 'api-0' allows 1 requests per 0.5s");
    await new Promise((r) => setTimeout(r, Math.max(0, 520 - (performance.now() - started))));
    expect((await g.fetch('in', '/x')).status).toBe(200);
    expect(up.received).toHaveLength(2);
  });

  it('keeps the buckets of different keys independent (header, then client address)', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(up.url, '    quota: [{ limit: 1, per: 1h, key: "header:X-User" }]'));
    const as = (user?: string, ip?: string) =>
      g.fetch('in', '/x', { headers: { ...(user ? { 'x-user': user } : {}), ...(ip ? { 'x-forwarded-for': ip } : {}) } }).then((r) => r.status);
    expect(await as('alice')).toBe(200);
    expect(await as('alice')).toBe(429);
    expect(await as('bob')).toBe(200);
    expect(await as('bob')).toBe(429);
    // without the header a request counts by its client address: never a free pass
    expect(await as(undefined, '203.0.113.7')).toBe(200);
    expect(await as(undefined, '203.0.113.7')).toBe(429);
    expect(await as(undefined, '203.0.113.8')).toBe(200);
  });

  it('counts key jwt:<claim> by the verified claim, after the JWT stage, and never lets an unauthenticated request count', async () => {
    const key = await makeKey('k1');
    const idp = await startJwksServer([key]);
    const up = await startUpstream(echo);
    const g = await startGatehouse(
      base(
        up.url,
        `    jwt: { issuer: "${idp.issuer}", audiences: [store-api], jwksUri: "${idp.jwksUri}" }
    quota: [{ limit: 1, per: 1h, key: "jwt:sub" }]`,
      ),
    );
    const as = async (sub: string) =>
      (await g.fetch('in', '/x', { headers: { authorization: `Bearer ${await sign(key, { iss: idp.issuer, aud: 'store-api', sub })}` } })).status;
    expect(await as('alice')).toBe(200);
    expect(await as('alice')).toBe(429);
    expect(await as('bob')).toBe(200);
    const anonymous = await g.fetch('in', '/x');
    expect(anonymous.status).toBe(401); // refused by jwt before the quota: it takes no token
    expect(anonymous.headers['ratelimit-policy']).toBe('"api-0";q=1;w=3600');
    expect(anonymous.headers.ratelimit).toBeUndefined();
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'api', result: 'allowed' })).toBe(2);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'api', result: 'rejected' })).toBe(1);
  });

  it('counts key ip by the client address behind a trusted proxy', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(up.url, '    quota: [{ limit: 1, per: 1h, key: ip }]'));
    const from = (ip: string) => g.fetch('in', '/x', { headers: { 'x-forwarded-for': ip } }).then((r) => r.status);
    expect(await from('198.51.100.1')).toBe(200);
    expect(await from('198.51.100.1')).toBe(429);
    expect(await from('198.51.100.2')).toBe(200);
  });

  it('applies every limit of a route, and a request refused by one does not use up the others', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(
      base(
        up.url,
        `    quota:
      - { limit: 1, per: 1h, key: "header:x-user" }
      - { limit: 2, per: 1h }`,
      ),
    );
    const as = (user: string) => g.fetch('in', '/x', { headers: { 'x-user': user } });
    const ok = await as('u1');
    expect(ok.status).toBe(200);
    expect(ok.headers['ratelimit-policy']).toBe('"api-0";q=1;w=3600, "api-1";q=2;w=3600');
    expect(ok.headers.ratelimit).toBe('"api-0";r=0;t=3600, "api-1";r=1;t=1800');
    const refused = await as('u1'); // refused by the per-user limit ...
    expect(refused.status).toBe(429);
    expect(refused.headers.ratelimit).toBe('"api-0";r=0;t=3600, "api-1";r=1;t=1800');
    expect((await as('u2')).status).toBe(200); // ... so the global limit still had a token for u2
    const global = await as('u3');
    expect(global.status).toBe(429); // now the global limit is empty
    expect(global.json().detail).toContain("quota 'api-1' allows 2 requests per 3600s");
    expect(up.received).toHaveLength(2);
  });

  it("adds the RateLimit headers to the upstream's answers and to gatehouse's own errors", async () => {
    const up = await startUpstream(reply(404, 'nope'));
    const g = await startGatehouse(base(up.url, '    quota: [{ limit: 5, per: 1s }]'));
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(404);
    expect(res.headers['ratelimit-policy']).toBe('"api-0";q=5;w=1');
    expect(res.headers.ratelimit).toMatch(/^"api-0";r=4;t=1$/);

    const port = await closedPort();
    const g2 = await startGatehouse(base(`http://127.0.0.1:${port}`, '    quota: [{ limit: 5, per: 1s }]'));
    const failed = await g2.fetch('in', '/x');
    expect(failed.status).toBe(502);
    expect(failed.headers['gatehouse-error']).toBe('bad_gateway');
    expect(failed.headers['ratelimit-policy']).toBe('"api-0";q=5;w=1');
    expect(failed.headers.ratelimit).toBe('"api-0";r=4;t=1');
  });

  it('shares a named quota between routes, and leaves routes without quota alone', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
quotas:
  partner: { limit: 2, per: 1m }
routes:
  - { name: a, listener: in, match: { pathPrefix: /a }, upstream: app, quota: [partner] }
  - { name: b, listener: in, match: { pathPrefix: /b }, upstream: app, quota: [partner] }
  - { name: free, listener: in, match: { pathPrefix: / }, upstream: app }
`);
    expect((await g.fetch('in', '/a')).headers['ratelimit-policy']).toBe('"partner";q=2;w=60');
    expect((await g.fetch('in', '/b')).status).toBe(200);
    expect((await g.fetch('in', '/a')).status).toBe(429);
    expect((await g.fetch('in', '/b')).status).toBe(429);
    const free = await g.fetch('in', '/c');
    expect(free.status).toBe(200);
    expect(free.headers['ratelimit-policy']).toBeUndefined();
    expect(free.headers.ratelimit).toBeUndefined();
  });

  it('counts decisions in gatehouse_ratelimit_decisions_total and shows quota state at /admin/quotas', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(up.url, '    quota: [{ limit: 2, per: 1h, key: ip }]'));
    for (const ip of ['192.0.2.1', '192.0.2.1', '192.0.2.1', '192.0.2.2']) await g.fetch('in', '/x', { headers: { 'x-forwarded-for': ip } });
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'api', result: 'allowed' })).toBe(3);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'api', result: 'rejected' })).toBe(1);
    const view = (await request(g.admin('/admin/quotas'))).json();
    expect(view.quotas['api-0']).toMatchObject({
      limit: 2,
      perMs: 3_600_000,
      burst: 2,
      key: 'ip',
      store: 'memory',
      storeMode: 'memory',
      onExceed: 'reject',
      routes: ['api'],
      activeKeys: 2,
      queue: null,
    });
    expect(view.upstreams).toEqual({});
  });

  it('keeps buckets across a reload that leaves the quota unchanged, and starts afresh when it changes', async () => {
    const up = await startUpstream(echo);
    const yaml = (limit: number, path: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
quotas: { q: { limit: ${limit}, per: 1h } }
routes: [{ name: api, listener: in, match: { pathPrefix: ${path} }, upstream: app, quota: [q] }]
`;
    const g = await startGatehouse(yaml(1, '/'));
    expect((await g.fetch('in', '/x')).status).toBe(200);
    expect((await g.fetch('in', '/x')).status).toBe(429);
    g.write(yaml(1, '/x')); // the route changes, the quota does not
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect((await g.fetch('in', '/x')).status).toBe(429);
    g.write(yaml(2, '/x')); // the quota changes: new buckets
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect((await g.fetch('in', '/x')).status).toBe(200);
  });
});
