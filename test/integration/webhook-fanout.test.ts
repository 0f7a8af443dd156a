import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { spawnGatehouse } from '../helpers/process.js';
import { startFakeStripe, stripeEvent, stripeWebhook, type StripeEvent } from '../helpers/stripe-api.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * SPEC §14: one Stripe intake fanned out to several destinations, each with its own types, path,
 * pace, attempts and dead letters; bulk replay; and reconciliation against Stripe's event list.
 * Webhooks are signed with the real stripe SDK; the event list is a fake of Stripe's on loopback.
 */

const SECRET = 'whsec_fanout_test_secret';
const API_KEY = 'sk_test_51FanoutReconcile000000000000';
const stripe = new Stripe('sk_test_unused');
const nowS = () => Math.floor(Date.now() / 1000);

interface Delivery {
  readonly eventId: string;
  readonly path: string;
  readonly source: string | undefined;
  readonly type: string;
  readonly atMs: number;
  readonly verified: boolean;
}

/** A consumer that records what it got (and whether Stripe's signature still verifies), answering `status`. */
async function consumer(status = 200) {
  const got: Delivery[] = [];
  const up = await startUpstream((req, res, body) => {
    let verified = false;
    try {
      stripe.webhooks.constructEvent(body, String(req.headers['stripe-signature']), SECRET);
      verified = true;
    } catch {
      // a reconciled event carries no Stripe signature
    }
    const parsed = JSON.parse(body.toString()) as { type: string };
    got.push({
      eventId: String(req.headers['gatehouse-webhook-event-id']),
      path: req.url!,
      source: req.headers['gatehouse-webhook-source'] as string | undefined,
      type: parsed.type,
      atMs: performance.now(),
      verified,
    });
    res.writeHead(state.status).end();
  });
  const state = { status };
  return { url: up.url, got, state, ids: () => got.map((d) => d.eventId) };
}

const post = (g: TestGatehouse, event: StripeEvent) => {
  const { body, headers } = stripeWebhook(event, SECRET);
  return g.fetch('in', '/webhooks/stripe', { method: 'POST', body, headers });
};

const config = (upstreams: string, webhook: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
${upstreams}
routes:
  - name: hooks
    listener: in
    match: { path: /webhooks/stripe }
    upstream: store
    timeout: 2s
    webhook:
      provider: stripe
      secret: ${SECRET}
${webhook}
`;

const count = (list: readonly string[], id: string) => list.filter((x) => x === id).length;

describe('webhook fan-out (SPEC §14)', () => {
  it('delivers each event to the destinations whose types take it, at their paths; an event nobody wants is filtered', async () => {
    const orders = await consumer();
    const analytics = await consumer();
    const g = await startGatehouse(
      config(
        `  store: { endpoints: [${orders.url}] }\n  warehouse: { endpoints: [${analytics.url}] }`,
        `      destinations:
        - { name: orders, upstream: store, path: /hooks/orders, types: ["checkout.session.completed", "charge.*"] }
        - { name: analytics, upstream: warehouse, types: ["charge.*", "customer.*", "checkout.*"] }`,
      ),
    );
    const t = nowS();
    const charge = stripeEvent('charge.dispute.created', t);
    const customer = stripeEvent('customer.created', t);
    const checkout = stripeEvent('checkout.session.completed', t);
    const invoice = stripeEvent('invoice.paid', t);
    for (const e of [charge, customer, checkout]) {
      const res = await post(g, e);
      expect(res.status).toBe(200);
      expect(res.headers['gatehouse-webhook']).toBe('accepted');
    }
    const filtered = await post(g, invoice);
    expect(filtered.status).toBe(200);
    expect(filtered.headers['gatehouse-webhook']).toBe('filtered');
    expect(filtered.json()).toMatchObject({ status: 'filtered', eventId: invoice.id });
    // the provider's retry of a filtered event is a duplicate: its id was recorded
    expect((await post(g, invoice)).headers['gatehouse-webhook']).toBe('duplicate');

    await eventually(() => orders.got.length === 2 && analytics.got.length === 3);
    expect(orders.got.map((d) => [d.eventId, d.path]).sort()).toEqual([[charge.id, '/hooks/orders'], [checkout.id, '/hooks/orders']].sort());
    expect(analytics.got.map((d) => [d.eventId, d.path]).sort()).toEqual([charge.id, customer.id, checkout.id].map((id) => [id, '/webhooks/stripe']).sort());
    // the original body and Stripe-Signature go along: each consumer can verify them itself
    expect([...orders.got, ...analytics.got].every((d) => d.verified && d.source === undefined)).toBe(true);

    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_webhook_events_total', { route: 'hooks', result: 'filtered' })).toBe(1);
    expect(sample(metrics, 'gatehouse_webhook_deliveries_total', { route: 'hooks', destination: 'orders', result: 'delivered' })).toBe(2);
    expect(sample(metrics, 'gatehouse_webhook_deliveries_total', { route: 'hooks', destination: 'analytics', result: 'delivered' })).toBe(3);
  });

  it('keeps delivering to one destination while another is down; the down one retries, then dead-letters', async () => {
    const orders = await consumer(503);
    const analytics = await consumer();
    const g = await startGatehouse(
      config(
        `  store: { endpoints: [${orders.url}] }\n  warehouse: { endpoints: [${analytics.url}] }`,
        `      delivery: { attempts: 3, backoff: { base: 10ms, max: 50ms } }
      destinations:
        - { name: orders, upstream: store }
        - { name: analytics, upstream: warehouse }`,
      ),
    );
    const events = Array.from({ length: 5 }, () => stripeEvent('charge.succeeded', nowS()));
    for (const e of events) expect((await post(g, e)).status).toBe(200);
    await eventually(() => analytics.got.length === 5);
    await eventually(async () => (await request(g.admin('/admin/webhooks/dead'))).json().events.length === 5, 10_000);
    expect(orders.got).toHaveLength(15); // 3 tries each
    const recent = (await request(g.admin('/admin/webhooks/recent?route=hooks'))).json().events;
    expect(recent).toHaveLength(5);
    for (const ev of recent) {
      expect(ev.state).toBe('dead');
      expect(ev.source).toBe('webhook');
      expect(ev.destinations.analytics).toMatchObject({ state: 'delivered', attempts: 1, lastError: null });
      expect(ev.destinations.orders).toMatchObject({ state: 'dead', attempts: 3, lastError: 'HTTP 503', lastStatus: 503 });
    }
    const dead = (await request(g.admin('/admin/webhooks/dead'))).json().events;
    expect(dead.every((e: any) => e.destination === 'orders')).toBe(true);
    // the shop is back: replaying one dead event delivers it to the shop only
    orders.state.status = 200;
    const replayed = await request(g.admin(`/admin/webhooks/dead/${dead[0].id}/replay`), { method: 'POST' });
    expect(replayed.status).toBe(202);
    expect(replayed.json().destinations).toEqual(['orders']);
    await eventually(() => orders.got.length === 16);
    expect(analytics.got).toHaveLength(5);
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_webhook_deliveries_total', { route: 'hooks', destination: 'orders', result: 'dead' })).toBe(5);
    expect(sample(metrics, 'gatehouse_webhook_deliveries_total', { route: 'hooks', destination: 'orders', result: 'retried' })).toBe(10);
    expect(sample(metrics, 'gatehouse_webhook_deliveries_total', { route: 'hooks', destination: 'analytics', result: 'delivered' })).toBe(5);
    expect(sample(metrics, 'gatehouse_webhook_deliveries_total', { route: 'hooks', destination: 'analytics', result: 'dead' })).toBe(0);
  });

  it('paces deliveries to a destination with rate, and not the others', async () => {
    const slow = await consumer();
    const fast = await consumer();
    const g = await startGatehouse(
      config(
        `  store: { endpoints: [${slow.url}] }\n  warehouse: { endpoints: [${fast.url}] }`,
        `      destinations:
        - { name: slow, upstream: store, rate: { limit: 5, per: 1s, burst: 1 } }
        - { name: fast, upstream: warehouse }`,
      ),
    );
    const events = Array.from({ length: 6 }, () => stripeEvent('charge.succeeded', nowS()));
    await Promise.all(events.map((e) => post(g, e)));
    await eventually(() => fast.got.length === 6);
    await eventually(() => slow.got.length === 6, 10_000);
    // one every 200 ms at most: six take at least a second (a lower bound holds on a loaded machine)
    const spanMs = slow.got[5]!.atMs - slow.got[0]!.atMs;
    expect(spanMs).toBeGreaterThanOrEqual(950);
    for (let i = 1; i < 6; i++) expect(slow.got[i]!.atMs - slow.got[i - 1]!.atMs).toBeGreaterThanOrEqual(150);
    // waiting for its turn is no attempt
    const recent = (await request(g.admin('/admin/webhooks/recent?route=hooks'))).json().events;
    expect(recent.every((ev: any) => ev.destinations.slow.attempts === 1)).toBe(true);
  });

  it('replays a time range: a dry run counts deliveries and lists ids, a real one delivers them again', async () => {
    const orders = await consumer();
    const analytics = await consumer();
    const g = await startGatehouse(
      config(
        `  store: { endpoints: [${orders.url}] }\n  warehouse: { endpoints: [${analytics.url}] }`,
        `      destinations:
        - { name: orders, upstream: store, types: ["charge.*"] }
        - { name: analytics, upstream: warehouse }`,
      ),
    );
    const from = new Date(Date.now() - 1000).toISOString();
    const charges = [stripeEvent('charge.succeeded', nowS()), stripeEvent('charge.refunded', nowS())];
    const customer = stripeEvent('customer.created', nowS());
    for (const e of [...charges, customer]) await post(g, e);
    await eventually(() => orders.got.length === 2 && analytics.got.length === 3);
    const to = new Date(Date.now() + 1000).toISOString();
    const replay = (body: object) => request(g.admin('/admin/webhooks/replay'), { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

    const dry = await replay({ route: 'hooks', from, to, dryRun: true });
    expect(dry.status).toBe(200);
    expect(dry.json().count).toBe(5); // an event going to two destinations counts twice
    expect(dry.json().ids).toHaveLength(3);
    expect((await replay({ route: 'hooks', destination: 'orders', from, to, dryRun: true })).json().count).toBe(2);
    expect((await replay({ route: 'hooks', from, to, status: 'dead', dryRun: true })).json()).toEqual({ count: 0, ids: [] });
    expect((await replay({ route: 'hooks', from: to, to: new Date(Date.now() + 60_000).toISOString(), dryRun: true })).json().count).toBe(0);
    // nothing was sent by the dry runs
    expect(orders.got).toHaveLength(2);

    const real = await replay({ route: 'hooks', destination: 'orders', from, to, status: 'delivered' });
    expect(real.status).toBe(202);
    expect(real.json()).toEqual({ count: 2 });
    await eventually(() => orders.got.length === 4);
    for (const e of charges) expect(count(orders.ids(), e.id)).toBe(2);
    expect(analytics.got).toHaveLength(3);

    expect((await replay({ route: 'hooks', from: 'yesterday', to })).status).toBe(400);
    expect((await replay({ route: 'hooks', from: to, to: from })).json().error).toBe('to must be later than from');
    expect((await replay({ route: 'nope', from, to })).status).toBe(404);
    expect((await replay({ route: 'hooks', destination: 'billing', from, to })).status).toBe(404);
  });
});

describe('reconciliation against Stripe\'s event list (SPEC §14)', () => {
  async function setup() {
    const orders = await consumer();
    const analytics = await consumer();
    const t = nowS();
    // five events Stripe has: two whose webhooks arrive, three whose webhooks were lost
    const arrived = [stripeEvent('charge.succeeded', t - 300), stripeEvent('customer.created', t - 290)];
    const missed = [stripeEvent('charge.refunded', t - 280), stripeEvent('checkout.session.completed', t - 270), stripeEvent('customer.updated', t - 260)];
    const old = stripeEvent('charge.succeeded', t - 7200); // outside the lookback
    // Stripe lists them once the arrived webhooks are in (list()): a listing at start must not beat them
    const api = await startFakeStripe({ apiKey: API_KEY, pageCap: 2, events: [] });
    const list = () => api.events.push(old, ...arrived, ...missed);
    const g = await startGatehouse(
      config(
        `  store: { endpoints: [${orders.url}] }
  warehouse: { endpoints: [${analytics.url}] }
  stripe-api:
    endpoints: [${api.url}]
    credentials: { header: { name: Authorization, value: "Bearer \${env:STRIPE_API_KEY}" } }`,
        `      reconcile: { upstream: stripe-api, every: 1s, lookback: 1h, settle: 10s }
      destinations:
        - { name: orders, upstream: store, types: ["charge.*", "checkout.*"] }
        - { name: analytics, upstream: warehouse }`,
      ),
      { env: { STRIPE_API_KEY: API_KEY } },
    );
    return { g, api, list, orders, analytics, arrived, missed, old };
  }

  it('delivers exactly the events whose webhook never came, once, through the named upstream\'s credentials', async () => {
    const { g, api, list, orders, analytics, arrived, missed, old } = await setup();
    for (const e of arrived) expect((await post(g, e)).headers['gatehouse-webhook']).toBe('accepted');
    list();
    await eventually(() => analytics.got.length === 5, 10_000);
    // two more listings go by: nothing more is delivered
    const listed = api.listRequests.length;
    await eventually(() => api.listRequests.length >= listed + 4, 10_000);
    expect(analytics.ids().sort()).toEqual([...arrived, ...missed].map((e) => e.id).sort());
    expect(orders.ids().sort()).toEqual([arrived[0]!, missed[0]!, missed[1]!].map((e) => e.id).sort());
    expect(analytics.ids()).not.toContain(old.id);
    for (const d of [...orders.got, ...analytics.got]) {
      const wasMissed = missed.some((e) => e.id === d.eventId);
      expect(d.source).toBe(wasMissed ? 'reconcile' : undefined);
    }
    // paged through Stripe's list with the upstream's key: every request authorised
    expect(api.listRequests.every((q) => q.get('limit') === '100')).toBe(true);
    expect(api.listRequests.some((q) => q.get('starting_after') !== null)).toBe(true);
    expect(g.log.all).not.toContain('invalid_request_error');
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_webhook_reconciled_total', { route: 'hooks' })).toBe(3);
    const recent = (await request(g.admin('/admin/webhooks/recent?route=hooks'))).json().events;
    expect(recent.filter((e: any) => e.source === 'reconcile').map((e: any) => e.eventId).sort()).toEqual(missed.map((e) => e.id).sort());
    expect(g.log.all).not.toContain(API_KEY);
  });

  it('does not deliver again when a missed event\'s webhook arrives late, after reconciliation delivered it', async () => {
    const { g, api, list, analytics, orders, arrived, missed } = await setup();
    for (const e of arrived) await post(g, e);
    list();
    await eventually(() => analytics.got.length === 5, 10_000);
    // Stripe's retry of a missed event finally gets through
    const late = await post(g, missed[0]!);
    expect(late.status).toBe(200);
    expect(late.headers['gatehouse-webhook']).toBe('duplicate');
    const listed = api.listRequests.length;
    await eventually(() => api.listRequests.length >= listed + 2, 10_000);
    for (const e of [...arrived, ...missed]) expect(count(analytics.ids(), e.id)).toBe(1);
    expect(count(orders.ids(), missed[0]!.id)).toBe(1);
  });

  it('does not deliver again when the webhook comes first and the event is listed after', async () => {
    const orders = await consumer();
    const t = nowS();
    const event = stripeEvent('charge.succeeded', t - 120);
    const api = await startFakeStripe({ apiKey: API_KEY, events: [] });
    const g = await startGatehouse(
      config(
        `  store: { endpoints: [${orders.url}] }
  stripe-api:
    endpoints: [${api.url}]
    credentials: { header: { name: Authorization, value: "Bearer ${API_KEY}" } }`,
        `      reconcile: { upstream: stripe-api, every: 1s, lookback: 1h, settle: 10s }`,
      ),
    );
    await post(g, event);
    await eventually(() => orders.got.length === 1);
    api.events.push(event); // now Stripe lists it too
    const listed = api.listRequests.length;
    await eventually(() => api.listRequests.length >= listed + 2, 10_000);
    expect(orders.ids()).toEqual([event.id]);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_webhook_reconciled_total', { route: 'hooks' })).toBe(0);
  });

  it('reports a refused key and delivers nothing from the list', async () => {
    const orders = await consumer();
    const api = await startFakeStripe({ apiKey: API_KEY, events: [stripeEvent('charge.succeeded', nowS() - 120)] });
    const g = await startGatehouse(
      config(
        `  store: { endpoints: [${orders.url}] }
  stripe-api:
    endpoints: [${api.url}]
    credentials: { header: { name: Authorization, value: "Bearer sk_test_wrong_key_000000" } }`,
        `      reconcile: { upstream: stripe-api, every: 1s, lookback: 1h, settle: 10s }`,
      ),
    );
    await eventually(() => g.log.json.some((l) => l.msg?.startsWith('reconciliation stopped early')), 10_000);
    const line = g.log.json.find((l) => l.msg?.startsWith('reconciliation stopped early'));
    expect(line.err).toBe("upstream 'stripe-api' answered 401 to the event list (invalid_request_error)");
    expect(orders.got).toHaveLength(0);
    expect(g.log.all).not.toContain('sk_test_wrong');
  });
});

describe('fan-out durability', () => {
  it('loses nothing to kill -9 during fan-out delivery: every destination gets every event exactly once after the restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-fanout-crash-'));
    const answered = { a: new Map<string, number>(), b: new Map<string, number>() };
    let stalling = true;
    const make = async (which: 'a' | 'b') =>
      startUpstream((req, res) => {
        const id = String(req.headers['gatehouse-webhook-event-id']);
        if (which === 'b' && stalling) return; // b's deliveries are in flight when gatehouse dies
        answered[which].set(id, (answered[which].get(id) ?? 0) + 1);
        res.writeHead(204).end();
      });
    const [a, b] = await Promise.all([make('a'), make('b')]);
    const yaml = config(
      `  store: { endpoints: [${a.url}] }\n  warehouse: { endpoints: [${b.url}] }`,
      `      delivery: { attempts: 10, backoff: { base: 100ms, max: 500ms } }
      destinations:
        - { name: a, upstream: store }
        - { name: b, upstream: warehouse }`,
    ).replace('timeout: 2s', 'timeout: 1s');
    const first = await spawnGatehouse(yaml, { dir });
    const events = Array.from({ length: 10 }, () => stripeEvent('charge.succeeded', nowS()));
    for (const e of events) {
      const { body, headers } = stripeWebhook(e, SECRET);
      const res = await request(`${first.url('in')}/webhooks/stripe`, { method: 'POST', body, headers });
      expect(res.headers['gatehouse-webhook']).toBe('accepted');
    }
    await eventually(() => answered.a.size === 10);
    await eventually(() => b.received.length >= 1); // b's deliveries are in flight, unanswered
    await first.kill('SIGKILL');
    for (const s of b.sockets) s.destroy();
    stalling = false;
    expect(answered.b.size).toBe(0);

    await spawnGatehouse(yaml, { dir });
    await eventually(() => answered.b.size === 10, 20_000);
    for (const e of events) {
      expect(answered.a.get(e.id)).toBe(1);
      expect(answered.b.get(e.id)).toBe(1);
    }
  });
});
