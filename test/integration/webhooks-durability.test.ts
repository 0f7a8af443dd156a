import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { eventually, request } from '../helpers/http.js';
import { spawnGatehouse } from '../helpers/process.js';
import { startRedis } from '../helpers/redis.js';
import { startUpstream } from '../helpers/upstream.js';

const SECRET = 'whsec_durability';
const stripe = new Stripe('sk_test_unused');

function signed(id: string) {
  const body = JSON.stringify({ id, object: 'event', type: 'invoice.paid' });
  return { body, headers: { 'content-type': 'application/json', 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET }) } };
}

const post = (url: string, id: string) => request(`${url}/webhooks/stripe`, { method: 'POST', ...signed(id) });

const yaml = (upstream: string, stores: string, store = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { store: { endpoints: [${upstream}] } }
${stores}
routes:
  - name: stripe
    listener: in
    match: { path: /webhooks/stripe }
    upstream: store
    timeout: 1s
    webhook:
      provider: stripe
      secret: ${SECRET}
      dedupe: { ttl: 1h${store} }
      delivery: { attempts: 10, backoff: { base: 100ms, max: 500ms } }
`;

/** Counts deliveries per event id, answering 2xx unless told to stall. */
async function store() {
  const answered = new Map<string, number>();
  const seen: string[] = [];
  let stalling = false;
  const up = await startUpstream((req, res) => {
    const id = String(req.headers['gatehouse-webhook-event-id']);
    seen.push(id);
    if (stalling) return; // never answers: the delivery is in flight when gatehouse dies
    answered.set(id, (answered.get(id) ?? 0) + 1);
    res.writeHead(204).end();
  });
  return {
    url: up.url,
    answered,
    seen,
    stall: (on: boolean) => (stalling = on),
    closeSockets: () => {
      for (const s of up.sockets) s.destroy();
    },
  };
}

describe('webhooks: durability across a crash (sqlite)', () => {
  it('delivers an acknowledged event exactly once after kill -9 during its delivery and a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-crash-'));
    const s = await store();
    s.stall(true);
    const config = yaml(s.url, '');
    const first = await spawnGatehouse(config, { dir });
    const res = await post(first.url('in'), 'evt_crash');
    expect(res.status).toBe(200);
    expect(res.headers['gatehouse-webhook']).toBe('accepted');
    await eventually(() => s.seen.includes('evt_crash')); // the attempt is in flight, unanswered
    await first.kill('SIGKILL');
    s.closeSockets();
    s.stall(false);
    expect(s.answered.get('evt_crash')).toBeUndefined();

    const second = await spawnGatehouse(config, { dir });
    await eventually(() => s.answered.get('evt_crash') === 1, 15_000);
    // the provider's retry of the same event after the restart is still a duplicate
    const retry = await post(second.url('in'), 'evt_crash');
    expect(retry.headers['gatehouse-webhook']).toBe('duplicate');
    // a later event delivered proves the worker moved on: evt_crash was not sent again
    await post(second.url('in'), 'evt_after');
    await eventually(() => s.answered.get('evt_after') === 1);
    expect(s.answered.get('evt_crash')).toBe(1);
    expect(second.log()).not.toContain(SECRET);
  });
});

describe('webhooks: graceful shutdown', () => {
  it('hands an in-flight delivery back on SIGTERM, exits 0, and the next start delivers it at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-stop-'));
    const s = await store();
    s.stall(true);
    const config = yaml(s.url, 'shutdown: { drainTimeout: 300ms }').replace('timeout: 1s', 'timeout: 30s');
    const first = await spawnGatehouse(config, { dir });
    expect((await post(first.url('in'), 'evt_stop')).status).toBe(200);
    await eventually(() => s.seen.includes('evt_stop'));
    await first.kill('SIGTERM');
    expect(first.child.exitCode).toBe(0);
    s.closeSockets();
    s.stall(false);
    // released, not leased: no need to wait out a 61 s lease
    await spawnGatehouse(config, { dir });
    await eventually(() => s.answered.get('evt_stop') === 1, 5_000);
  });
});

describe('webhooks: two gatehouse processes sharing one Redis', () => {
  it('refuses a duplicate that reaches the other process and delivers every event exactly once', async () => {
    const redis = await startRedis();
    const s = await store();
    const config = yaml(s.url, `stores: { shared: { type: redis, url: ${redis.url}, commandTimeout: 2s } }`, ', store: shared');
    const [a, b] = await Promise.all([spawnGatehouse(config), spawnGatehouse(config)]);
    for (const p of [a, b]) await eventually(async () => /gatehouse_store_up\{store="shared"\} 1/.test((await request(p.admin('/metrics'))).text));

    const [one, two] = await Promise.all([post(a.url('in'), 'evt_both'), post(b.url('in'), 'evt_both')]);
    expect([one.headers['gatehouse-webhook'], two.headers['gatehouse-webhook']].sort()).toEqual(['accepted', 'duplicate']);

    const ids = Array.from({ length: 30 }, (_, i) => `evt_${i}`);
    const results = await Promise.all(ids.map((id, i) => post((i % 2 === 0 ? a : b).url('in'), id)));
    expect(results.map((r) => `${r.status} ${String(r.headers['gatehouse-webhook'])}`)).toEqual(ids.map(() => '200 accepted'));
    await eventually(() => [...ids, 'evt_both'].every((id) => s.answered.get(id) === 1), 15_000);
    // both processes worked on the queue, and nothing was delivered twice
    expect([...s.answered.values()].every((n) => n === 1)).toBe(true);
    expect(s.seen.length).toBe(ids.length + 1);
    // the store's answer reaches the delivering process a moment after the store counted it
    const deliveredInA = async () =>
      (await request(a.admin('/admin/webhooks/recent?route=stripe&limit=100'))).json().events.filter((e: { state: string }) => e.state === 'delivered').length;
    await eventually(async () => (await deliveredInA()) === ids.length + 1, 5_000);
  });
});
