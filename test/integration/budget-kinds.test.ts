import { describe, expect, it } from 'vitest';
import { startShopifySim } from '../../src/demo/provider-sims.js';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { request } from '../helpers/http.js';
import { startUpstream, type Reply } from '../helpers/upstream.js';

/*
 * The other budget kinds and the concurrency limit, each against a small upstream that answers as
 * the provider documents (SPEC §12).
 */

const gatehouse = (upstream: string, budget: string, route = '') =>
  startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  p:
    endpoints: [${upstream}]
    ${budget}
routes:
  - { name: r, listener: in, match: { pathPrefix: / }, upstream: p, timeout: 20s${route} }
`);

describe('stripe rate limiter', () => {
  it('pauses the account after a rate 429 with a doubling back-off: requests not yet sent wait rather than fail', async () => {
    const seen: number[] = [];
    let calls = 0;
    const stripe: Reply = (_req, res) => {
      seen.push(performance.now());
      calls++;
      if (calls <= 2) res.writeHead(429, { 'stripe-rate-limited-reason': 'global-rate', 'content-type': 'application/json' }).end('{"error":{"code":"rate_limit"}}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    };
    const up = await startUpstream(stripe);
    const g = await gatehouse(up.url, 'budget: { kind: stripe, key: "header:stripe-account" }');
    const send = () => request(g.url('in') + '/v1/charges', { method: 'POST', headers: { 'stripe-account': 'acct_1' }, body: 'a=1' });
    expect((await send()).status).toBe(429); // not retried: that is the route's retry policy's business
    const second = await send(); // waits out the 500 ms pause, then is rate-limited again
    expect(second.status).toBe(429);
    const third = await send(); // waits out 1 s (doubled)
    expect(third.status).toBe(200);
    expect(seen[1]! - seen[0]!).toBeGreaterThanOrEqual(450);
    expect(seen[2]! - seen[1]!).toBeGreaterThanOrEqual(950);
    // another account is not paused
    const other = performance.now();
    expect((await request(g.url('in') + '/v1/charges', { method: 'POST', headers: { 'stripe-account': 'acct_2' }, body: 'a=1' })).status).toBe(200);
    expect(performance.now() - other).toBeLessThan(400);
  });
});

describe('shopify-rest', () => {
  it('mirrors X-Shopify-Shop-Api-Call-Limit and retries a 429 after its Retry-After', async () => {
    // Shopify's REST bucket: 40 calls, leaking 2 per second; a call into a full bucket is a 429
    let used = 40; // full: the mirror, not knowing yet, sends the first call into a 429
    let at = performance.now();
    let throttled = 0;
    const shop: Reply = (_req, res) => {
      const now = performance.now();
      used = Math.max(0, used - (2 * (now - at)) / 1000);
      at = now;
      if (used + 1 > 40) {
        throttled++;
        res.writeHead(429, { 'retry-after': '1', 'x-shopify-shop-api-call-limit': `${Math.ceil(used)}/40` }).end('{"errors":"Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}');
        return;
      }
      used++;
      res.writeHead(200, { 'content-type': 'application/json', 'x-shopify-shop-api-call-limit': `${Math.ceil(used)}/40` }).end('{"products":[]}');
    };
    const up = await startUpstream(shop);
    const g = await gatehouse(up.url, 'budget: { kind: shopify-rest, initial: { restoreRate: 2 } }');
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await g.fetch('in', '/admin/api/2024-10/products.json')).status);
    expect(statuses).toEqual([200, 200, 200, 200]);
    // the first call's 429 was absorbed (retried after its Retry-After); the header then told the
    // mirror how full the bucket is, and the next calls waited for it to leak instead of being throttled
    expect(throttled).toBe(1);
    const view = (await request(g.admin('/admin/budgets'))).json();
    expect(view.budgets.p.keys.global).toMatchObject({ capacity: 40, restoreRate: 2 });
  });
});

describe('shopify-graphql answers longer than maxInspect', () => {
  it('streams them and reads their cost from the last bytes', async () => {
    const sim = await startShopifySim({ capacity: 1000, restoreRate: 50, costs: { Big: { requested: 100, actual: 80 } }, padBytes: 300_000 });
    onCleanup(() => sim.close());
    const g = await gatehouse(sim.url, 'budget: { kind: shopify-graphql, maxInspect: 16kb }');
    const res = await request(g.url('in') + '/graphql.json', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'query Big { x }' }) });
    expect(res.status).toBe(200);
    expect(res.body.length).toBeGreaterThan(300_000);
    expect(res.json().extensions.cost.actualQueryCost).toBe(80);
    const view = (await request(g.admin('/admin/budgets'))).json();
    // the mirror took the provider's figures from the tail: 1000 - 100 + 20 (refund), restored a little since
    expect(view.budgets.p.keys.global.available).toBeGreaterThanOrEqual(915);
    expect(view.budgets.p.keys.global.available).toBeLessThan(1000);
  });
});

describe('concurrency limit', () => {
  it('queues requests over a fixed limit by priority, or refuses them with 503 overloaded', async () => {
    let inFlight = 0;
    let peak = 0;
    const slow: Reply = async (_req, res) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 100));
      inFlight--;
      res.writeHead(200).end('ok');
    };
    const up = await startUpstream(slow);
    const queued = await gatehouse(up.url, 'concurrency: { limit: 2 }');
    const statuses = await Promise.all(Array.from({ length: 8 }, () => queued.fetch('in', '/').then((r) => r.status)));
    expect(statuses).toEqual(Array.from({ length: 8 }, () => 200));
    expect(peak).toBe(2);

    const refusing = await gatehouse(up.url, 'concurrency: { limit: 1, onExceed: reject }');
    const answers = await Promise.all(Array.from({ length: 3 }, () => refusing.fetch('in', '/')));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 503, 503]);
    const refused = answers.find((a) => a.status === 503)!;
    expect(refused.headers['gatehouse-error']).toBe('overloaded');
  });

  it('keeps the mirror across a reload that leaves the budget unchanged', async () => {
    const sim = await startShopifySim({ capacity: 500, restoreRate: 1, costs: { Q: { requested: 100, actual: 100 } } });
    onCleanup(() => sim.close());
    const yaml = (timeout: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  p:
    endpoints: [${sim.url}]
    budget: { kind: shopify-graphql }
routes:
  - { name: r, listener: in, match: { pathPrefix: / }, upstream: p, timeout: ${timeout} }
`;
    const g = await startGatehouse(yaml('20s'));
    const q = () => request(g.url('in') + '/graphql.json', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'query Q { x }' }) });
    expect((await q()).status).toBe(200);
    const before = (await request(g.admin('/admin/budgets'))).json().budgets.p.keys.global;
    expect(before.capacity).toBe(500);
    g.write(yaml('15s'));
    expect((await request(g.admin('/admin/reload'), { method: 'POST' })).status).toBe(200);
    const after = (await request(g.admin('/admin/budgets'))).json().budgets.p.keys.global;
    expect(after.capacity).toBe(500); // learnt from the provider, not the default 1000
    expect(after.available).toBeLessThanOrEqual(before.available + 2);
  });
});
