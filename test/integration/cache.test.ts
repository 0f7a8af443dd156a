import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { spawnGatehouse } from '../helpers/process.js';
import { startRedis } from '../helpers/redis.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { delay, reply, startUpstream, type Reply } from '../helpers/upstream.js';

/** A gatehouse with one route `r` (all methods) on listener `in` to upstream `app`. */
function config(endpoints: string[], route: string, extra = '', upstream = ''): string {
  return `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${endpoints.join(', ')}] ${upstream} } }
routes:
  - name: r
    listener: in
    match: { pathPrefix: / }
    upstream: app
${route
  .trim()
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
${extra}`;
}

/** Answers 200 with a body naming the request number, and the given headers. */
function numbered(headers: Record<string, string>): Reply & { count: () => number } {
  let n = 0;
  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    n++;
    res.writeHead(200, { 'content-type': 'text/plain', ...headers });
    res.end(`answer ${n} for ${req.url}`);
  }) as unknown as Reply & { count: () => number };
  handler.count = () => n;
  return handler;
}

describe('cache: freshness, Age and Cache-Status', () => {
  it('stores a max-age answer, answers the next request from the cache with Age and Cache-Status, and counts hit and miss', async () => {
    const up = await startUpstream(numbered({ 'cache-control': 'max-age=60', etag: '"v1"' }));
    const g = await startGatehouse(config([up.url], 'cache: { maxSize: 1mb }'));
    const first = await g.fetch('in', '/products/1');
    expect(first.status).toBe(200);
    expect(first.headers['cache-status']).toBe('gatehouse; fwd=miss; stored');
    const second = await g.fetch('in', '/products/1');
    expect(second.status).toBe(200);
    expect(second.text).toBe(first.text);
    expect(second.headers['cache-status']).toMatch(/^gatehouse; hit; ttl=(5[6-9]|60)$/);
    expect(second.headers.age).toMatch(/^[0-3]$/);
    expect(second.headers.etag).toBe('"v1"');
    expect(second.headers['content-length']).toBe(String(first.body.length));
    expect(second.headers['x-request-id']).toBeTruthy();
    expect(up.received).toHaveLength(1);

    const head = await g.fetch('in', '/products/1', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['cache-status']).toMatch(/^gatehouse; hit/);
    expect(head.body.length).toBe(0);

    const conditional = await g.fetch('in', '/products/1', { headers: { 'if-none-match': '"v1"' } });
    expect(conditional.status).toBe(304);
    expect(conditional.body.length).toBe(0);
    expect(up.received).toHaveLength(1);

    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_cache_requests_total', { route: 'r', result: 'hit' })).toBe(3);
    expect(sample(metrics, 'gatehouse_cache_requests_total', { route: 'r', result: 'miss' })).toBe(1);
    expect(sample(metrics, 'gatehouse_cache_requests_total', { route: 'r', result: 'stale' })).toBe(0);
    await eventually(() => g.accessLog.json.length === 4);
    expect(g.accessLog.json[1]).toMatchObject({ route: 'r', status: 200, attempts: 0 });
  });

  it('keeps the Age an upstream cache gave and counts it against max-age', async () => {
    const up = await startUpstream(numbered({ 'cache-control': 'max-age=100', age: '90' }));
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    await g.fetch('in', '/a');
    const hit = await g.fetch('in', '/a');
    expect(hit.headers['cache-status']).toMatch(/^gatehouse; hit; ttl=([6-9]|10)$/);
    expect(Number(hit.headers.age)).toBeGreaterThanOrEqual(90);
  });

  it('uses Expires minus Date when there is no max-age, and defaultTtl for answers that say nothing', async () => {
    const date = new Date();
    const up = await startUpstream((req, res) => {
      if (req.url === '/expires') res.writeHead(200, { date: date.toUTCString(), expires: new Date(date.getTime() + 30_000).toUTCString() });
      else res.writeHead(200);
      res.end('x');
    });
    const g = await startGatehouse(config([up.url], 'cache: { defaultTtl: 5s }'));
    await g.fetch('in', '/expires');
    expect((await g.fetch('in', '/expires')).headers['cache-status']).toMatch(/^gatehouse; hit; ttl=(2[6-9]|30)$/);
    await g.fetch('in', '/plain');
    expect((await g.fetch('in', '/plain')).headers['cache-status']).toMatch(/^gatehouse; hit; ttl=[2-5]$/);
    expect(up.received).toHaveLength(2);
  });

  it('does not store no-store answers nor statuses that are not cacheable, and says so', async () => {
    const up = await startUpstream((req, res) => {
      if (req.url === '/no-store') res.writeHead(200, { 'cache-control': 'no-store, max-age=60' });
      else res.writeHead(500, { 'cache-control': 'max-age=60' });
      res.end('x');
    });
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    expect((await g.fetch('in', '/no-store')).headers['cache-status']).toBe('gatehouse; fwd=miss');
    expect((await g.fetch('in', '/no-store')).headers['cache-status']).toBe('gatehouse; fwd=miss');
    expect((await g.fetch('in', '/error')).headers['cache-status']).toBe('gatehouse; fwd=miss; fwd-status=500');
    await g.fetch('in', '/error');
    expect(up.received).toHaveLength(4);
  });

  it("honours the request's own no-cache: the copy is revalidated, not served as it is", async () => {
    const up = await startUpstream(numbered({ 'cache-control': 'max-age=60', etag: '"e"' }));
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    await g.fetch('in', '/n');
    const res = await g.fetch('in', '/n', { headers: { 'cache-control': 'no-cache' } });
    expect(up.received).toHaveLength(2);
    expect(up.received[1]!.headers['if-none-match']).toBe('"e"');
    expect(res.headers['cache-status']).toBe('gatehouse; fwd=request; stored');
  });
});

describe('cache: revalidation', () => {
  it('revalidates a stale copy with If-None-Match: the upstream answers 304, the client gets 200 with the stored body', async () => {
    let n = 0;
    const up = await startUpstream((req, res) => {
      n++;
      if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', 'cache-control': 'no-cache', 'x-refreshed': String(n) });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"v1"', 'cache-control': 'no-cache', 'content-type': 'application/json' });
      res.end('{"price":42}');
    });
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    const first = await g.fetch('in', '/price');
    expect(first.headers['cache-status']).toBe('gatehouse; fwd=miss; stored');
    const second = await g.fetch('in', '/price', { headers: { 'if-none-match': '"client-own"' } });
    expect(second.status).toBe(200);
    expect(second.text).toBe('{"price":42}');
    expect(second.headers['content-type']).toBe('application/json');
    expect(second.headers['x-refreshed']).toBe('2'); // the 304's fields refresh the stored ones
    expect(second.headers['cache-status']).toBe('gatehouse; fwd=stale; fwd-status=304; stored; ttl=0');
    expect(up.received).toHaveLength(2);
    expect(up.received[1]!.headers['if-none-match']).toBe('"v1"'); // the cache's validator replaced the client's
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_cache_requests_total', { route: 'r', result: 'revalidated' })).toBe(1);
  });

  it('revalidates with If-Modified-Since when the answer has only Last-Modified', async () => {
    const modified = new Date(Date.now() - 60_000).toUTCString();
    const up = await startUpstream((req, res) => {
      if (req.headers['if-modified-since'] === modified) {
        res.writeHead(304, { 'cache-control': 'max-age=0' });
        res.end();
        return;
      }
      res.writeHead(200, { 'last-modified': modified, 'cache-control': 'max-age=0' });
      res.end('catalogue');
    });
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    await g.fetch('in', '/c');
    const res = await g.fetch('in', '/c');
    expect(res.status).toBe(200);
    expect(res.text).toBe('catalogue');
    expect(res.headers['cache-status']).toMatch(/fwd=stale; fwd-status=304/);
  });

  it('serves a stale copy within stale-while-revalidate at once and refreshes it in the background', async () => {
    let version = 1;
    const up = await startUpstream((req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=0, stale-while-revalidate=60', etag: `"v${version}"` });
      res.end(`version ${version}`);
    });
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    await g.fetch('in', '/rates');
    version = 2;
    const stale = await g.fetch('in', '/rates');
    expect(stale.text).toBe('version 1');
    expect(stale.headers['cache-status']).toMatch(/^gatehouse; hit; ttl=-?\d+; detail=stale-while-revalidate$/);
    await eventually(() => up.received.length === 2);
    expect(up.received[1]!.headers['if-none-match']).toBe('"v1"');
    await eventually(async () => (await g.fetch('in', '/rates')).text === 'version 2');
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_cache_requests_total', { route: 'r', result: 'stale' })).toBeGreaterThanOrEqual(1);
  });
});

describe('cache: Vary', () => {
  it('keeps one copy per value of the fields the answer varies on', async () => {
    const up = await startUpstream((req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language' });
      res.end(`hello in ${req.headers['accept-language'] ?? 'none'}`);
    });
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    const en = await g.fetch('in', '/hello', { headers: { 'accept-language': 'en' } });
    const fr = await g.fetch('in', '/hello', { headers: { 'accept-language': 'fr' } });
    expect(fr.headers['cache-status']).toBe('gatehouse; fwd=miss; stored');
    const enAgain = await g.fetch('in', '/hello', { headers: { 'accept-language': 'en' } });
    const frAgain = await g.fetch('in', '/hello', { headers: { 'accept-language': 'fr' } });
    const none = await g.fetch('in', '/hello');
    expect(en.text).toBe('hello in en');
    expect(enAgain.text).toBe('hello in en');
    expect(enAgain.headers['cache-status']).toMatch(/hit/);
    expect(frAgain.text).toBe('hello in fr');
    expect(frAgain.headers['cache-status']).toMatch(/hit/);
    expect(none.text).toBe('hello in none');
    expect(up.received).toHaveLength(3);
  });

  it('never stores an answer with Vary: *', async () => {
    const up = await startUpstream(reply(200, 'x', { 'cache-control': 'max-age=60', vary: '*' }));
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    await g.fetch('in', '/v');
    await g.fetch('in', '/v');
    expect(up.received).toHaveLength(2);
  });
});

describe('cache: the rules of a shared cache (RFC 9111 §3.5)', () => {
  it('does not store an answer to an authorized request unless it is public, s-maxage or must-revalidate', async () => {
    const up = await startUpstream((req, res) => {
      res.writeHead(200, { 'cache-control': req.url === '/public' ? 'public, max-age=60' : 'max-age=60' });
      res.end(`for ${req.headers.authorization}`);
    });
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    const alice = await g.fetch('in', '/account', { headers: { authorization: 'Bearer alice' } });
    expect(alice.headers['cache-status']).toBe('gatehouse; fwd=miss');
    const bob = await g.fetch('in', '/account', { headers: { authorization: 'Bearer bob' } });
    expect(bob.text).toBe('for Bearer bob');
    expect(up.received).toHaveLength(2);

    await g.fetch('in', '/public', { headers: { authorization: 'Bearer alice' } });
    const shared = await g.fetch('in', '/public', { headers: { authorization: 'Bearer bob' } });
    expect(shared.headers['cache-status']).toMatch(/hit/);
    expect(up.received).toHaveLength(3);
  });

  it('does not store private answers nor answers that set a cookie; a private cache (private: true) does store private ones', async () => {
    const handler: Reply = (req, res) => {
      if (req.url === '/cookie') res.writeHead(200, { 'cache-control': 'max-age=60', 'set-cookie': 'session=abc' });
      else res.writeHead(200, { 'cache-control': 'private, max-age=60' });
      res.end('mine');
    };
    const up = await startUpstream(handler);
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    for (const path of ['/private', '/private', '/cookie', '/cookie']) await g.fetch('in', path);
    expect(up.received).toHaveLength(4);

    const up2 = await startUpstream(handler);
    const g2 = await startGatehouse(config([up2.url], 'cache: { private: true }'));
    await g2.fetch('in', '/private');
    expect((await g2.fetch('in', '/private')).headers['cache-status']).toMatch(/hit/);
    expect(up2.received).toHaveLength(1);
  });
});

describe('cache: invalidation', () => {
  it('a successful unsafe request to a URL removes its stored copy (RFC 9111 §4.4)', async () => {
    const up = await startUpstream(numbered({ 'cache-control': 'max-age=60' }));
    const g = await startGatehouse(config([up.url], 'cache: {}'));
    await g.fetch('in', '/cart');
    expect((await g.fetch('in', '/cart')).headers['cache-status']).toMatch(/hit/);
    const post = await g.fetch('in', '/cart', { method: 'POST', body: '{"add":1}' });
    expect(post.headers['cache-status']).toBe('gatehouse; fwd=bypass');
    const after = await g.fetch('in', '/cart');
    expect(after.headers['cache-status']).toBe('gatehouse; fwd=miss; stored');
    expect(up.received.map((r) => r.method)).toEqual(['GET', 'POST', 'GET']);
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_cache_requests_total', { route: 'r', result: 'bypass' })).toBe(1);
  });
});

describe('cache: stale-if-error', () => {
  it('serves the stale copy while the upstream refuses connections, and says so in Cache-Status', async () => {
    const up = await startUpstream(numbered({ 'cache-control': 'max-age=0' }));
    const g = await startGatehouse(config([up.url], 'cache: { staleIfError: 1h }'));
    const first = await g.fetch('in', '/shipping/rates?to=DE');
    expect(first.status).toBe(200);
    await up.close(); // the port now refuses connections
    const res = await g.fetch('in', '/shipping/rates?to=DE');
    expect(res.status).toBe(200);
    expect(res.text).toBe(first.text);
    expect(res.headers['cache-status']).toMatch(/^gatehouse; fwd=stale; hit; ttl=-?\d+; detail=stale-if-error$/);
    // without a copy: gatehouse's own 502, with Cache-Status too
    const other = await g.fetch('in', '/shipping/rates?to=FR');
    expect(other.status).toBe(502);
    expect(other.headers['gatehouse-error']).toBe('bad_gateway');
    expect(other.headers['cache-status']).toBe('gatehouse; fwd=miss');
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_cache_requests_total', { route: 'r', result: 'stale' })).toBe(1);
    await eventually(() => g.accessLog.json.length === 3);
    expect(g.accessLog.json[1]).toMatchObject({ status: 200, error: null });
  });

  it('serves the stale copy for a 5xx answer and while the circuit breaker is open', async () => {
    let failing = false;
    const up = await startUpstream((req, res) => {
      if (failing) {
        res.writeHead(503);
        res.end('down');
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=0, stale-if-error=600' });
      res.end('catalogue v1');
    });
    const g = await startGatehouse(config([up.url], 'cache: {}', '', ', circuitBreaker: { consecutiveFailures: 1, openFor: 60s }'));
    await g.fetch('in', '/catalogue');
    failing = true;
    const on503 = await g.fetch('in', '/catalogue');
    expect(on503.status).toBe(200);
    expect(on503.text).toBe('catalogue v1');
    expect(on503.headers['cache-status']).toMatch(/^gatehouse; fwd=stale; fwd-status=503; hit; ttl=-?\d+; detail=stale-if-error$/);
    expect(up.received).toHaveLength(2);
    // the 503 opened the breaker: the next request is refused before any upstream request
    const whileOpen = await g.fetch('in', '/catalogue');
    expect(whileOpen.status).toBe(200);
    expect(whileOpen.text).toBe('catalogue v1');
    expect(whileOpen.headers['cache-status']).toMatch(/fwd=stale; hit/);
    expect(up.received).toHaveLength(2);
    const uncached = await g.fetch('in', '/other');
    expect(uncached.status).toBe(503);
    expect(uncached.headers['gatehouse-error']).toBe('circuit_open');
  });

  it('does not serve a must-revalidate copy stale', async () => {
    const up = await startUpstream(reply(200, 'x', { 'cache-control': 'max-age=0, must-revalidate', etag: '"m"' }));
    const g = await startGatehouse(config([up.url], 'cache: { staleIfError: 1h, staleWhileRevalidate: 1h }'));
    await g.fetch('in', '/m');
    await up.close();
    const res = await g.fetch('in', '/m');
    expect(res.status).toBe(502);
    expect(res.headers['cache-status']).toBe('gatehouse; fwd=stale');
  });
});

describe('cache: stores', () => {
  it('bounds the memory store: many large distinct answers evict the least recently used, and RSS stays bounded', { timeout: 90_000 }, async () => {
    const body = Buffer.alloc(256 * 1024, 'x');
    const up = await startUpstream((_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=600' });
      res.end(body);
    });
    const g = await spawnGatehouse(config([up.url], 'cache: { maxSize: 2mb }'));
    const get = (path: string) => request(g.url('in') + path);
    for (let i = 0; i < 40; i++) await get(`/warm/${i}`); // the cache is full from here on
    const before = g.memory().rss;
    // 640 distinct answers of 256 KB: 160 MB through a 2 MB cache. A cache that kept them would
    // grow by 160 MB; garbage the collector has not reclaimed yet accounts for tens of MB (about
    // 49 MB on Node 24, whose young generation is larger), so the bound is half the total.
    for (let i = 0; i < 640; i++) expect((await get(`/big/${i}`)).body.length).toBe(body.length);
    const growth = g.memory().rss - before;
    expect(growth, `RSS grew ${(growth / 1048576).toFixed(1)} MB`).toBeLessThan(80 * 1024 * 1024);
    const view = (await request(g.admin('/admin/caches'))).json();
    expect(view.caches.r).toMatchObject({ store: 'memory', maxSize: 2 * 1024 * 1024 });
    expect(view.caches.r.bytes).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(view.caches.r.entries).toBeGreaterThanOrEqual(5);
    expect((await get('/big/639')).headers['cache-status']).toMatch(/hit/);
    expect((await get('/big/0')).headers['cache-status']).toMatch(/fwd=miss/);
    console.info(`memory bound: RSS grew ${(growth / 1048576).toFixed(1)} MB while 160 MB of distinct answers went through a 2 MB cache`);
  });

  it('does not store an answer larger than a quarter of maxSize', async () => {
    const up = await startUpstream((req, res) => {
      if (req.url === '/chunked') {
        res.writeHead(200, { 'cache-control': 'max-age=60' }); // no Content-Length: found too large as it streams
        res.write(Buffer.alloc(200 * 1024, 'y'));
        res.end(Buffer.alloc(300 * 1024, 'y'));
        return;
      }
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(500 * 1024) });
      res.end(Buffer.alloc(500 * 1024, 'y'));
    });
    const g = await startGatehouse(config([up.url], 'cache: { maxSize: 1mb }'));
    expect((await g.fetch('in', '/huge')).headers['cache-status']).toBe('gatehouse; fwd=miss');
    expect((await g.fetch('in', '/huge')).headers['cache-status']).toBe('gatehouse; fwd=miss');
    const chunked = await g.fetch('in', '/chunked');
    expect(chunked.body.length).toBe(500 * 1024);
    expect((await g.fetch('in', '/chunked')).headers['cache-status']).toMatch(/^gatehouse; fwd=miss/);
    expect(up.received).toHaveLength(4);
  });

  it('keeps answers in a named sqlite store', async () => {
    const up = await startUpstream(numbered({ 'cache-control': 'max-age=60' }));
    const g = await startGatehouse(config([up.url], 'cache: { store: disk }', 'stores: { disk: { type: sqlite } }'));
    const first = await g.fetch('in', '/s');
    const second = await eventually(async () => {
      const r = await g.fetch('in', '/s');
      return /hit/.test(String(r.headers['cache-status'])) && r;
    });
    expect(second.text).toBe(first.text);
  });

  it('keeps answers in a named redis store, and answers from the upstream while Redis is away', async () => {
    const redis = await startRedis();
    const up = await startUpstream(numbered({ 'cache-control': 'max-age=60', vary: 'accept' }));
    const g = await startGatehouse(config([up.url], 'cache: { store: shared }', `stores: { shared: { type: redis, url: "${redis.url}" } }`));
    await g.fetch('in', '/r', { headers: { accept: 'text/plain' } });
    const hit = await eventually(async () => {
      const r = await g.fetch('in', '/r', { headers: { accept: 'text/plain' } });
      return /hit/.test(String(r.headers['cache-status'])) && r;
    });
    const calls = up.received.length;
    expect((await g.fetch('in', '/r', { headers: { accept: 'text/plain' } })).text).toBe(hit.text);
    expect(up.received).toHaveLength(calls);
    await redis.stop();
    const without = await g.fetch('in', '/r', { headers: { accept: 'text/plain' } });
    expect(without.status).toBe(200);
    expect(without.headers['cache-status']).toMatch(/fwd=miss/);
  });
});

describe('cache: every answer of the route says Cache-Status; reloads keep the copies', () => {
  it('a request refused before the lookup (429) carries Cache-Status bypass', async () => {
    const up = await startUpstream(reply(200, 'x', { 'cache-control': 'max-age=60' }));
    const g = await startGatehouse(config([up.url], 'cache: {}\nquota: [{ limit: 1, per: 1m }]'));
    expect((await g.fetch('in', '/q')).headers['cache-status']).toBe('gatehouse; fwd=miss; stored');
    const refused = await g.fetch('in', '/q');
    expect(refused.status).toBe(429);
    expect(refused.headers['cache-status']).toBe('gatehouse; fwd=bypass; detail=refused');
  });

  it('a reload that leaves store and maxSize alone keeps the memory cache', async () => {
    const up = await startUpstream(numbered({ 'cache-control': 'max-age=600' }));
    const yaml = (timeout: string) => config([up.url], `cache: { maxSize: 1mb }\ntimeout: ${timeout}`);
    const g = await startGatehouse(yaml('10s'));
    const first = await g.fetch('in', '/kept');
    g.write(yaml('20s'));
    expect((await request(g.admin('/admin/reload'), { method: 'POST' })).json()).toMatchObject({ changed: true });
    const after = await g.fetch('in', '/kept');
    expect(after.headers['cache-status']).toMatch(/hit/);
    expect(after.text).toBe(first.text);
    expect(up.received).toHaveLength(1);
  });
});

describe('cache: spans', () => {
  it('the SERVER span says what the cache did (gatehouse.cache.result), and a coalesced request says so', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(delay(500, reply(200, 'x', { 'cache-control': 'max-age=60' })));
    const g = await startGatehouse(config([up.url], 'cache: {}\ncoalesce: true', `telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`));
    await Promise.all([g.fetch('in', '/s'), g.fetch('in', '/s')]);
    await g.fetch('in', '/s');
    await g.stop();
    const servers = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER, 3);
    expect(servers.map((s) => s.attributes['gatehouse.cache.result']).sort()).toEqual(['hit', 'miss', 'miss']);
    expect(servers.filter((s) => s.attributes['gatehouse.coalesced'] === true)).toHaveLength(1);
    expect(up.received).toHaveLength(1);
  });
});
