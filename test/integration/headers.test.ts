import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { startRawUpstream } from '../helpers/raw.js';
import { echo, reply, startUpstream } from '../helpers/upstream.js';

const simple = (upstream: string, extra = '', listenerExtra = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0${listenerExtra} }]
upstreams: { app: { endpoints: [${upstream}] } }
routes:
  - name: api
    listener: in
    match: { pathPrefix: / }
    upstream: app
${extra}`;

describe('hop-by-hop headers', () => {
  it('removes hop-by-hop request headers and every header the Connection header names', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(simple(up.url));
    const res = await g.fetch('in', '/x', {
      headers: {
        connection: 'keep-alive, X-Hop-A, x-hop-b',
        'x-hop-a': '1',
        'x-hop-b': '2',
        'keep-alive': 'timeout=5',
        'proxy-connection': 'keep-alive',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        te: 'trailers',
        'x-end-to-end': 'kept',
      },
    });
    const seen = res.json().headers;
    for (const h of ['x-hop-a', 'x-hop-b', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te']) expect(seen[h], h).toBeUndefined();
    expect(seen.connection ?? 'keep-alive').toBe('keep-alive'); // undici's own, not the client's list
    expect(seen['x-end-to-end']).toBe('kept');
  });

  it('removes hop-by-hop response headers and every header the upstream Connection header names', async () => {
    const up = await startRawUpstream((socket, request) => {
      void request.then(() =>
        socket.end(
          'HTTP/1.1 200 OK\r\nConnection: close, X-Up-Hop\r\nX-Up-Hop: secret\r\nKeep-Alive: timeout=5\r\n' +
            'Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: x-sum\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok',
        ),
      );
    });
    const g = await startGatehouse(simple(up.url));
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(200);
    expect(res.text).toBe('ok');
    for (const h of ['x-up-hop', 'keep-alive', 'proxy-connection', 'upgrade', 'trailer']) expect(res.headers[h], h).toBeUndefined();
    expect(res.headers.connection).not.toMatch(/x-up-hop/i);
    expect(res.headers['x-kept']).toBe('yes');
  });

  it('passes a request with Expect: 100-continue (curl sends it for large uploads) without it reaching undici', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(simple(up.url));
    const res = await g.fetch('in', '/upload', { method: 'POST', headers: { expect: '100-continue', 'content-type': 'text/plain' }, body: 'hello' });
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ method: 'POST', body: 'hello' });
    expect(res.json().headers.expect).toBeUndefined();
  });
});

describe('end-to-end headers', () => {
  it('passes repeated response headers such as Set-Cookie through one by one', async () => {
    const up = await startUpstream((_req, res) => {
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/; HttpOnly']);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
    const g = await startGatehouse(simple(up.url));
    const res = await g.fetch('in', '/x');
    expect(res.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/; HttpOnly']);
  });
});

describe('forwarded headers', () => {
  it('replaces X-Forwarded-For/-Proto/-Host sent by an untrusted peer', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(simple(up.url));
    const res = await g.fetch('in', '/x', {
      headers: { host: 'shop.example.com', 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' },
    });
    const seen = res.json().headers;
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe('shop.example.com');
    expect(g.accessLog.json.at(-1).client).toBe('127.0.0.1');
  });

  it('appends to X-Forwarded-For and keeps -Proto/-Host from a trusted proxy', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(simple(up.url, '', ', trustedProxies: [127.0.0.1/32]'));
    const res = await g.fetch('in', '/x', {
      headers: { host: 'internal:8080', 'x-forwarded-for': '203.0.113.7, 10.0.0.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example.com' },
    });
    const seen = res.json().headers;
    expect(seen['x-forwarded-for']).toBe('203.0.113.7, 10.0.0.1, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen['x-forwarded-host']).toBe('shop.example.com');
    expect(g.accessLog.json.at(-1).client).toBe('10.0.0.1'); // the right-most address that is not a trusted proxy
  });

  it('sends the endpoint authority as Host by default, the client Host with preserve, or a fixed name', async () => {
    const up = await startUpstream(echo);
    const route = (name: string, prefix: string, rewrite: string) => `
  - name: ${name}
    listener: in
    match: { pathPrefix: ${prefix} }
    upstream: app
${rewrite}`;
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes:
${route('fixed', '/fixed', '    rewrite: { host: api.internal }')}
${route('keep', '/keep', '    rewrite: { host: preserve }')}
${route('default', '/', '')}
`);
    const headers = { host: 'shop.example.com' };
    expect((await g.fetch('in', '/x', { headers })).json().headers.host).toBe(`127.0.0.1:${up.port}`);
    expect((await g.fetch('in', '/keep/x', { headers })).json().headers.host).toBe('shop.example.com');
    expect((await g.fetch('in', '/fixed/x', { headers })).json().headers.host).toBe('api.internal');
  });
});

describe('request ids', () => {
  it('keeps a valid x-request-id and sends it both ways', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(simple(up.url));
    const res = await g.fetch('in', '/x', { headers: { 'x-request-id': 'abc-123.DEF:4' } });
    expect(res.json().headers['x-request-id']).toBe('abc-123.DEF:4');
    expect(res.headers['x-request-id']).toBe('abc-123.DEF:4');
    expect(g.accessLog.json.at(-1).requestId).toBe('abc-123.DEF:4');
  });

  it('replaces a junk or oversized x-request-id with a generated one', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(simple(up.url));
    for (const junk of ['has spaces', '<script>', 'x'.repeat(201), '"quoted"']) {
      const res = await g.fetch('in', '/x', { headers: { 'x-request-id': junk } });
      const sent = res.json().headers['x-request-id'];
      expect(sent, junk).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.headers['x-request-id']).toBe(sent);
    }
  });

  it("answers with gatehouse's request id, not the upstream's", async () => {
    const up = await startUpstream(reply(200, 'ok', { 'x-request-id': 'from-upstream' }));
    const g = await startGatehouse(simple(up.url));
    const res = await g.fetch('in', '/x', { headers: { 'x-request-id': 'mine' } });
    expect(res.headers['x-request-id']).toBe('mine');
  });

  it('puts the request id on gatehouse errors too', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(simple(up.url).replace('pathPrefix: /', 'pathPrefix: /api'));
    const res = await g.fetch('in', '/x', { headers: { 'x-request-id': 'err-1' } });
    expect(res.status).toBe(404);
    expect(res.headers['x-request-id']).toBe('err-1');
    expect(res.json().requestId).toBe('err-1');
  });
});

describe('configured header rules', () => {
  it('sets and removes request and response headers, and a client cannot pre-set a header the route sets', async () => {
    const up = await startUpstream(reply(200, 'ok', { server: 'secret-server/1.0', 'x-powered-by': 'php', 'x-cache': 'upstream' }));
    const g = await startGatehouse(
      simple(
        up.url,
        `    headers:
      request: { set: { x-sidecar: gatehouse }, remove: [x-debug] }
      response: { set: { x-cache: gatehouse }, remove: [server, X-Powered-By] }
`,
      ),
    );
    const res = await g.fetch('in', '/x', { headers: { 'x-sidecar': 'forged', 'x-debug': '1' } });
    expect(up.received[0]!.headers['x-sidecar']).toBe('gatehouse');
    expect(up.received[0]!.headers['x-debug']).toBeUndefined();
    expect(up.received[0]!.rawHeaders.filter((h) => h.toLowerCase() === 'x-sidecar')).toHaveLength(1);
    expect(res.headers.server).toBeUndefined();
    expect(res.headers['x-powered-by']).toBeUndefined();
    expect(res.headers['x-cache']).toBe('gatehouse');
  });
});
