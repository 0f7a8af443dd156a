import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { rawExchange } from '../helpers/raw.js';
import { echo, startUpstream } from '../helpers/upstream.js';

/** Each route answers through its own upstream, so the upstream that saw a request names the route. */
async function routedGatehouse(routes: string, listeners = '[{ name: in, address: 127.0.0.1:0 }]') {
  const names = [...routes.matchAll(/name: ([\w-]+)/g)].map((m) => m[1]!);
  const ups = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await startUpstream(echo)] as const)));
  const g = await startGatehouse(`
version: 1
listeners: ${listeners}
upstreams:
${names.map((n) => `  ${n}: { endpoints: [${ups[n]!.url}] }`).join('\n')}
routes:
${routes}
`);
  const which = async (path: string, opts: Parameters<typeof g.fetch>[2] = {}, listener = 'in') => {
    const before = Object.fromEntries(names.map((n) => [n, ups[n]!.received.length]));
    const res = await g.fetch(listener, path, opts);
    const hit = names.filter((n) => ups[n]!.received.length > before[n]!);
    return { status: res.status, route: hit[0], res };
  };
  return { g, ups, which };
}

describe('route selection', () => {
  it('takes the first matching route of the listener, in file order', async () => {
    const { which } = await routedGatehouse(`
  - { name: exact, listener: in, match: { path: /api/health }, upstream: exact }
  - { name: orders, listener: in, match: { pathRegex: "/api/orders/[0-9]+" }, upstream: orders }
  - { name: api, listener: in, match: { pathPrefix: /api }, upstream: api }
  - { name: fallback, listener: in, match: { pathPrefix: / }, upstream: fallback }
`);
    expect((await which('/api/health')).route).toBe('exact');
    expect((await which('/api/health/x')).route).toBe('api');
    expect((await which('/api/orders/12')).route).toBe('orders');
    expect((await which('/api/orders/12/items')).route).toBe('api');
    expect((await which('/api')).route).toBe('api');
    expect((await which('/apix')).route).toBe('fallback');
  });

  it('matches methods (a GET route also takes HEAD), hosts without port and case, wildcard hosts, and headers', async () => {
    const { which } = await routedGatehouse(`
  - { name: writes, listener: in, match: { pathPrefix: /, methods: [POST, PUT] }, upstream: writes }
  - { name: reads, listener: in, match: { pathPrefix: /, methods: [GET] }, upstream: reads }
  - { name: tenant, listener: in, match: { pathPrefix: /, headers: { x-tenant: acme } }, upstream: tenant }
  - { name: shop, listener: in, match: { pathPrefix: /, host: shop.example.com }, upstream: shop }
  - { name: wild, listener: in, match: { pathPrefix: /, host: "*.example.com" }, upstream: wild }
`);
    expect((await which('/x', { method: 'POST', body: 'a' })).route).toBe('writes');
    expect((await which('/x', { method: 'GET' })).route).toBe('reads');
    const head = await which('/x', { method: 'HEAD' });
    expect(head.route).toBe('reads');
    expect(head.res.body.length).toBe(0);
    expect((await which('/x', { method: 'DELETE', headers: { 'X-Tenant': 'acme' } })).route).toBe('tenant');
    expect((await which('/x', { method: 'DELETE', headers: { host: 'SHOP.example.com:8443' } })).route).toBe('shop');
    expect((await which('/x', { method: 'DELETE', headers: { host: 'api.example.com' } })).route).toBe('wild');
    const deeper = await which('/x', { method: 'DELETE', headers: { host: 'a.b.example.com' } });
    expect(deeper.route).toBeUndefined();
    expect(deeper.status).toBe(404);
  });

  it('routes per listener: a route of one listener is not reachable on another', async () => {
    const { which } = await routedGatehouse(
      `
  - { name: inbound, listener: in, match: { pathPrefix: / }, upstream: inbound }
  - { name: outbound, listener: out, match: { pathPrefix: /stripe }, upstream: outbound }
`,
      '[{ name: in, address: 127.0.0.1:0 }, { name: out, address: 127.0.0.1:0 }]',
    );
    expect((await which('/stripe/x')).route).toBe('inbound');
    expect((await which('/stripe/x', {}, 'out')).route).toBe('outbound');
    expect((await which('/other', {}, 'out')).status).toBe(404);
  });

  it('matches and forwards the normalised path, so /api/../admin cannot bypass a prefix route', async () => {
    const { which, ups } = await routedGatehouse(`
  - { name: admin, listener: in, match: { pathPrefix: /admin }, upstream: admin }
  - { name: api, listener: in, match: { pathPrefix: /api }, upstream: api }
`);
    const viaDots = await which('/api/../admin/users');
    expect(viaDots.route).toBe('admin');
    expect(ups.admin!.received.at(-1)!.url).toBe('/admin/users');
    const viaEscapes = await which('/api/%2e%2e/%61dmin?x=%2e');
    expect(viaEscapes.route).toBe('admin');
    expect(ups.admin!.received.at(-1)!.url).toBe('/admin?x=%2e'); // the query is passed as it came
    const encodedSlash = await which('/api%2F..%2Fadmin');
    expect(encodedSlash.status).toBe(400); // dot segments hidden behind encoded slashes are refused
    expect(encodedSlash.route).toBeUndefined();
  });

  it('answers 400 bad_request as problem+json for an invalid percent-escape', async () => {
    const { g, ups } = await routedGatehouse(`  - { name: all, listener: in, match: { pathPrefix: / }, upstream: all }`);
    const res = await g.fetch('in', '/a%zz');
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('bad_request');
    expect(res.json()).toMatchObject({ type: 'urn:gatehouse:error:bad_request', title: 'Bad request', status: 400, code: 'bad_request' });
    expect(ups.all!.received).toHaveLength(0);
  });

  it('answers a request in absolute-form (as sent to an HTTP proxy) by its path, its authority replacing Host', async () => {
    const { g, ups } = await routedGatehouse(`  - { name: all, listener: in, match: { pathPrefix: /api, host: shop.example.com }, upstream: all }`);
    const port = g.gh.listenerAddress('in')!.port;
    const out = await rawExchange(port, `GET http://shop.example.com/api/x?y=1 HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n`);
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(ups.all!.received[0]!.url).toBe('/api/x?y=1');
    expect(ups.all!.received[0]!.headers['x-forwarded-host']).toBe('shop.example.com');
  });

  it('answers 404 no_route with every problem field', async () => {
    const { g } = await routedGatehouse(`  - { name: api, listener: in, match: { pathPrefix: /api }, upstream: api }`);
    const res = await g.fetch('in', '/other', { headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } });
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('no_route');
    expect(res.json()).toEqual({
      type: 'urn:gatehouse:error:no_route',
      title: 'No route',
      status: 404,
      code: 'no_route',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      requestId: res.headers['x-request-id'],
      detail: "no route of listener 'in' matches GET /other",
    });
  });
});

describe('path rewrite', () => {
  it('strips a prefix, replaces a prefix, and prepends the endpoint base path', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  app: { endpoints: ["${up.url}"] }
  based: { endpoints: ["${up.url}/base/"] }
routes:
  - { name: strip, listener: in, match: { pathPrefix: /strip }, upstream: app, rewrite: { stripPrefix: /strip } }
  - { name: swap, listener: in, match: { pathPrefix: /v1 }, upstream: app, rewrite: { prefix: /v2 } }
  - { name: based, listener: in, match: { pathPrefix: /b }, upstream: based, rewrite: { stripPrefix: /b } }
`);
    expect((await g.fetch('in', '/strip/orders/1?q=2')).json().url).toBe('/orders/1?q=2');
    expect((await g.fetch('in', '/strip')).json().url).toBe('/');
    expect((await g.fetch('in', '/v1/orders')).json().url).toBe('/v2/orders');
    expect((await g.fetch('in', '/b/x')).json().url).toBe('/base/x');
  });
});
