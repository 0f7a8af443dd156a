import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { closedPort, echo, reply, startUpstream } from '../helpers/upstream.js';

describe('proxying', () => {
  it('forwards a matched request with the stripped prefix, forwarded headers and a request id', async () => {
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
    rewrite: { stripPrefix: /api }
    headers:
      request: { set: { x-sidecar: gatehouse }, remove: [x-debug] }
      response: { remove: [x-powered-by] }
`);
    const res = await g.fetch('in', '/api/orders/7?expand=1', {
      headers: { 'x-debug': '1', connection: 'x-secret-hop', 'x-secret-hop': 'v', 'x-forwarded-for': '6.6.6.6' },
    });
    expect(res.status).toBe(200);
    const seen = res.json();
    expect(seen.url).toBe('/orders/7?expand=1');
    expect(seen.headers['x-sidecar']).toBe('gatehouse');
    expect(seen.headers['x-debug']).toBeUndefined();
    expect(seen.headers['x-secret-hop']).toBeUndefined();
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1'); // untrusted peer: replaced, not appended
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers.host).toBe(`127.0.0.1:${up.port}`);
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.headers['x-request-id']).toBe(res.headers['x-request-id']);
  });

  it('answers 404 no_route as problem+json when nothing matches', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: api, listener: in, match: { pathPrefix: /api }, upstream: app }]
`);
    const res = await g.fetch('in', '/apix');
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('no_route');
    expect(res.json()).toMatchObject({ type: 'urn:gatehouse:error:no_route', status: 404, code: 'no_route' });
    expect(up.received).toHaveLength(0);
  });

  it('answers 502 bad_gateway when the upstream refuses connections', async () => {
    const port = await closedPort();
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [http://127.0.0.1:${port}] } }
routes: [{ name: api, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(502);
    expect(res.headers['gatehouse-error']).toBe('bad_gateway');
    expect(res.json()).toMatchObject({ code: 'bad_gateway', route: 'api' });
    expect(g.accessLog.json.at(-1)).toMatchObject({ route: 'api', status: 502, error: 'bad_gateway', attempts: 1 });
  });

  it('passes an upstream 503 through unchanged', async () => {
    const up = await startUpstream(reply(503, 'busy', { 'retry-after': '3' }));
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: api, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(503);
    expect(res.text).toBe('busy');
    expect(res.headers['retry-after']).toBe('3');
    expect(res.headers['gatehouse-error']).toBeUndefined();
  });
});
