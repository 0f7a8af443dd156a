import { describe, expect, it } from 'vitest';
import { startStripeSim } from '../../src/demo/provider-sims.js';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { request } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';

/*
 * Stripe's concurrency limiter through gatehouse (SPEC §12): the simulator answers 429 with
 * `Stripe-Rate-Limited-Reason: endpoint-concurrency` to every request beyond K in flight. The
 * adaptive limit must find K and stay there, so that after a warm-up the store sees almost no 429.
 */

const K = 6;

describe('stripe budget with an adaptive concurrency limit', () => {
  it('settles near the provider\'s concurrency limit: after warm-up at most 1% 429s reach the store', async () => {
    const sim = await startStripeSim({ maxInFlight: K, latencyMs: 20 });
    onCleanup(() => sim.close());
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  stripe:
    endpoints: [${sim.url}]
    budget: { kind: stripe, key: "header:stripe-account" }
    concurrency: { limit: adaptive, min: 1, max: 50, maxWait: 60s }
routes:
  - { name: payments, listener: in, match: { pathPrefix: /v1 }, upstream: stripe, timeout: 60s }
`);
    const total = 800;
    const warmUp = 200;
    const statuses: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 24 }, async () => {
        while (next < total) {
          next++;
          const res = await request(g.url('in') + '/v1/charges', { method: 'POST', headers: { 'stripe-account': 'acct_1' }, body: 'amount=100', timeoutMs: 90_000 });
          statuses.push(res.status);
        }
      }),
    );
    const after = statuses.slice(warmUp);
    const limited = after.filter((s) => s === 429).length;
    const view = (await request(g.admin('/admin/budgets'))).json();
    const limit = view.budgets.stripe.concurrencyLimit as number;
    console.info(`stripe: ${statuses.filter((s) => s === 429).length} 429s in all, ${limited} of ${after.length} after warm-up; limit now ${limit} (provider K = ${K}); simulator peak in flight ${sim.stats.peak}`);
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
    expect(limited / after.length).toBeLessThanOrEqual(0.01);
    expect(limit).toBeGreaterThanOrEqual(K - 2);
    expect(limit).toBeLessThanOrEqual(K + 1);
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_upstream_concurrency_limit', { upstream: 'stripe' })).toBe(limit);
  }, 120_000); // 800 requests through a limit of 6: seconds on an idle machine, much longer on a loaded one
});
