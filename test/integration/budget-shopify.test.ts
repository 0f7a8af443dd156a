import { describe, expect, it } from 'vitest';
import { startShopifySim, type ShopifySim } from '../../src/demo/provider-sims.js';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { startRedis } from '../helpers/redis.js';

/*
 * Shopify's GraphQL cost limits through gatehouse (SPEC §12), against a loopback simulator that
 * keeps Shopify's leaky bucket: a query is admitted only when the bucket holds its requested cost,
 * a query that does not fit is a THROTTLED answer in an HTTP 200. Time scales are generous and
 * the checks are ratios, so a loaded machine slows the test down but does not fail it.
 */

/** Two queries: requested vs actual cost as Shopify reports them; the mean actual cost is 20. */
const COSTS = { Products: { requested: 25, actual: 15 }, Orders: { requested: 45, actual: 25 } };
const MEAN_ACTUAL = 20;
const QUERIES = ['query Products { products(first: 10) { nodes { id } } }', 'query Orders {\n  orders(first: 20) {\n    nodes { id }\n  }\n}'];

const config = (sim: string, extra = '', budget = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
${extra}
upstreams:
  shopify:
    endpoints: [${sim}]
    budget: { kind: shopify-graphql, key: "header:x-shopify-shop-domain", maxWait: 60s${budget} }
routes:
  - { name: sync, listener: in, match: { pathPrefix: /graphql }, upstream: shopify, timeout: 60s, priority: low }
  - { name: checkout, listener: in, match: { pathPrefix: /urgent/graphql }, upstream: shopify, timeout: 60s, priority: high, rewrite: { stripPrefix: /urgent } }
`;

interface Done {
  readonly at: number;
  readonly status: number;
  readonly throttled: boolean;
  readonly ms: number;
}

async function query(g: TestGatehouse, i: number, path = '/graphql', shop = 'shop-a.myshopify.com'): Promise<Done> {
  const started = performance.now();
  const res = await request(g.url('in') + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-shopify-shop-domain': shop },
    body: JSON.stringify({ query: QUERIES[i % 2] }),
    timeoutMs: 90_000,
  });
  const end = performance.now();
  return { at: end, status: res.status, throttled: res.text.includes('THROTTLED'), ms: end - started };
}

/** `clients` loops of queries until `forMs` has passed; every answer, in order of completion. */
async function load(targets: readonly TestGatehouse[], clients: number, forMs: number): Promise<{ done: Done[]; t0: number }> {
  const t0 = performance.now();
  const done: Done[] = [];
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = c; performance.now() - t0 < forMs; i++) done.push(await query(targets[c % targets.length]!, i));
    }),
  );
  return { done, t0 };
}

/** When the initial burst is over: the simulator's bucket first ran low, plus a little. */
const burstOver = (sim: ShopifySim): number => (sim.stats.drainedAt ?? 0) + 500;

/** Queries the simulator answered per second from `from` (ms since it started) to its last answer. */
function rate(sim: ShopifySim, from: number): number {
  const times = sim.stats.answeredAt;
  const to = times[times.length - 1]!;
  return times.filter((t) => t > from && t <= to).length / ((to - from) / 1000);
}

function startSim(capacity: number, restoreRate: number): Promise<ShopifySim> {
  return startShopifySim({ capacity, restoreRate, costs: COSTS, latencyMs: 10 }).then((sim) => {
    onCleanup(() => sim.close());
    return sim;
  });
}

describe('shopify-graphql budget', () => {
  it('paces 10 concurrent clients to the bucket: no THROTTLED reaches them, throughput near the physical limit', async () => {
    // restore 200 points/s at a mean actual cost of 20: the physical limit is 10 queries/s
    const sim = await startSim(400, 200);
    const g = await startGatehouse(config(sim.url));
    const forMs = 8_000;
    const { done } = await load([g], 10, forMs);
    expect(done.every((d) => d.status === 200)).toBe(true);
    expect(done.filter((d) => d.throttled)).toHaveLength(0);
    expect(sim.stats.lowest).toBeGreaterThanOrEqual(0);
    // after the initial burst (the full bucket; over once the simulator's bucket first ran low):
    // completions per second over the rest of the run, against restoreRate / mean cost
    const from = burstOver(sim);
    const perSecond = rate(sim, from);
    const physical = 200 / MEAN_ACTUAL;
    console.info(`shopify-graphql: ${done.length} queries, ${perSecond.toFixed(2)}/s after the burst (physical limit ${physical}/s), simulator throttled ${sim.stats.throttled}`);
    expect(perSecond).toBeGreaterThanOrEqual(0.9 * physical);
    // the mirror learns each query's requested cost from its first answer: the simulator throttles
    // at most those first sends, and nothing once the costs are known
    expect(sim.stats.throttledAt.filter((t) => t > from)).toHaveLength(0);

    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_budget_available', { upstream: 'shopify' })).toBeGreaterThanOrEqual(0);
    expect(sample(metrics, 'gatehouse_budget_wait_seconds_count', { upstream: 'shopify', result: 'admitted' })).toBeGreaterThan(0);
    const view = (await request(g.admin('/admin/budgets'))).json();
    expect(view.budgets.shopify.kind).toBe('shopify-graphql');
    expect(view.budgets.shopify.keys['shop-a.myshopify.com']).toMatchObject({ capacity: 400, restoreRate: 200, waiting: 0, concurrencyLimit: null });
  }, 60_000);

  it('retries a THROTTLED answer once the mirror affords the query, instead of passing it on', async () => {
    const sim = await startSim(100, 50);
    const g = await startGatehouse(config(sim.url));
    // the mirror starts from `initial` (1000 points by default), so the first queries are
    // sent and throttled by Shopify: gatehouse absorbs those and retries them
    sim.drain('shop-a.myshopify.com');
    const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => query(g, i)));
    expect(answers.map((a) => [a.status, a.throttled])).toEqual(Array.from({ length: 4 }, () => [200, false]));
    expect(sim.stats.throttled).toBeGreaterThan(0);
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_budget_throttled_total', { upstream: 'shopify', outcome: 'retried' })).toBeGreaterThan(0);
    expect(sample(metrics, 'gatehouse_budget_throttled_total', { upstream: 'shopify', outcome: 'returned' }) ?? 0).toBe(0);
  });

  it('passes the provider\'s THROTTLED answer on, unchanged, when no retry fits in the route timeout', async () => {
    const sim = await startSim(100, 1); // one point a second: a 25-point query needs 25 s
    const g = await startGatehouse(config(sim.url).replaceAll('timeout: 60s', 'timeout: 2s'));
    sim.drain('shop-a.myshopify.com');
    const res = await request(g.url('in') + '/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-shopify-shop-domain': 'shop-a.myshopify.com' },
      body: JSON.stringify({ query: QUERIES[0] }),
    });
    expect(res.status).toBe(200);
    expect(res.json().errors[0].extensions.code).toBe('THROTTLED');
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_budget_throttled_total', { upstream: 'shopify', outcome: 'returned' })).toBe(1);
  });

  it('releases high-priority queries before low-priority ones under contention', async () => {
    const sim = await startSim(100, 100);
    const g = await startGatehouse(config(sim.url));
    // teach the mirror the bucket (and the queries' costs), then let everyone queue at once
    await query(g, 0);
    await query(g, 1);
    const low = Array.from({ length: 12 }, (_, i) => query(g, i, '/graphql'));
    await new Promise((r) => setTimeout(r, 50)); // the low ones are queued first
    const high = Array.from({ length: 12 }, (_, i) => query(g, i, '/urgent/graphql'));
    const [lo, hi] = await Promise.all([Promise.all(low), Promise.all(high)]);
    expect([...lo, ...hi].every((d) => d.status === 200 && !d.throttled)).toBe(true);
    const median = (xs: Done[]) => xs.map((d) => d.ms).sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.info(`priority: median wait high ${median(hi).toFixed(0)} ms, low ${median(lo).toFixed(0)} ms`);
    expect(median(hi)).toBeLessThan(median(lo));
  }, 60_000);

  it('keeps two gatehouses on one Redis within one bucket', async () => {
    const redis = await startRedis();
    const sim = await startSim(400, 200);
    const extra = `stores:\n  shared: { type: redis, url: ${redis.url}, keyPrefix: "gh-budget:", commandTimeout: 5s }`;
    const yaml = config(sim.url, extra, ', store: shared');
    const a = await startGatehouse(yaml);
    const b = await startGatehouse(yaml);
    await eventually(async () => (await request(a.admin('/readyz'))).status === 200 && (await request(b.admin('/readyz'))).status === 200);
    const forMs = 8_000;
    const { done } = await load([a, b], 10, forMs);
    expect(done.filter((d) => d.throttled || d.status !== 200)).toHaveLength(0);
    const from = burstOver(sim);
    const perSecond = rate(sim, from);
    console.info(`two gatehouses on Redis: ${perSecond.toFixed(2)}/s after the burst (physical limit 10/s), simulator throttled ${sim.stats.throttled}`);
    // each gatehouse learns a query's cost from its own first answers, which Shopify may throttle
    // (gatehouse absorbs them); once learnt, the shared mirror keeps both within the one bucket.
    // A replica that resets the mirror from an answer's throttleStatus cannot see the other's
    // queries in flight at that moment, so a rare throttle still happens after the burst (up to
    // 3 of ~90 seen when CI ran test files side by side): bounded, and none reaches a client.
    const late = sim.stats.throttledAt.filter((t) => t > from).length;
    expect(late).toBeLessThanOrEqual(Math.ceil(0.05 * sim.stats.answered));
    expect(perSecond).toBeGreaterThanOrEqual(0.9 * 10);
    const keys = await redis.command('KEYS gh-budget:b:shopify:*');
    expect(keys).toContain('shop-a.myshopify.com');
  }, 60_000);
});
