import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request, type Response } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { spawnGatehouse } from '../helpers/process.js';
import { closedPort } from '../helpers/upstream.js';

const SECRET = 'whsec_store_health_secret';
const stripe = new Stripe('sk_test_unused');

/** A webhook route whose store is down (nothing listens): every event waits. */
const yaml = (upstreamPort: number, stores = '', dedupe = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
${stores}
upstreams: { store: { endpoints: [http://127.0.0.1:${upstreamPort}] } }
routes:
  - name: hooks
    listener: in
    match: { path: /hooks, methods: [POST] }
    upstream: store
    maxBodySize: 1mb
    webhook: { provider: stripe, secret: ${SECRET}, delivery: { attempts: 100, backoff: { base: 5s, max: 5s } }${dedupe} }
`;

const event = (id: string, padding = 0) => JSON.stringify({ id, object: 'event', padding: 'x'.repeat(padding) });

async function post(url: string, body: string): Promise<Response> {
  return request(url + '/hooks', {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET }) },
  });
}

const gauge = async (admin: string, name: string, labels: Record<string, string>) => sample(await scrape(admin), name, labels);

describe('store health and the pending gauge (SPEC §3.1)', () => {
  it('sqlite: store_up 0 once its directory is removed, and events are refused (503) rather than acknowledged into a deleted file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-store-'));
    const state = join(dir, 'state');
    const g = await startGatehouse(
      yaml(await closedPort(), `stores: { disk: { type: sqlite, path: ${join(state, 'events.db')} } }`, ', dedupe: { store: disk }'),
    );
    expect((await post(g.url('in'), event('evt_1'))).status).toBe(200);
    const metrics = g.admin('/metrics');
    await eventually(async () => (await gauge(metrics, 'gatehouse_webhook_pending', { route: 'hooks' })) === 1);
    expect(await gauge(metrics, 'gatehouse_store_up', { store: 'disk' })).toBe(1);

    rmSync(state, { recursive: true, force: true });
    await eventually(async () => (await gauge(metrics, 'gatehouse_store_up', { store: 'disk' })) === 0, 5_000, 100);
    const refused = await post(g.url('in'), event('evt_2'));
    expect(refused.status).toBe(503);
    expect(refused.headers['gatehouse-error']).toBe('store_unavailable');
    // the event that waits is still counted
    expect(await gauge(metrics, 'gatehouse_webhook_pending', { route: 'hooks' })).toBe(1);
    expect(g.log.all).toContain('sqlite store cannot write');
  });

  it('sqlite: store_up 0 while the disk is full, pending still counts the waiting events, and both recover when space is back', async () => {
    const g = await spawnGatehouse(yaml(await closedPort()));
    const url = g.url('in');
    const metrics = g.admin('/metrics');
    expect((await post(url, event('evt_1'))).status).toBe(200);
    await eventually(async () => (await gauge(metrics, 'gatehouse_webhook_pending', { route: 'hooks' })) === 1);
    expect(await gauge(metrics, 'gatehouse_store_up', { store: 'default-sqlite' })).toBe(1);

    // "disk full": files may not grow past their current size (EFBIG, as ENOSPC would refuse them)
    const db = join(g.dir, 'data', 'gatehouse.db');
    const largest = Math.max(...['', '-wal', '-shm'].map((suffix) => statSync(db + suffix).size));
    execFileSync('prlimit', ['--pid', String(g.pid), `--fsize=${largest + 4096}:unlimited`]);
    const refused = await post(url, event('evt_2', 256 * 1024));
    expect(refused.status).toBe(503);
    expect(refused.headers['gatehouse-error']).toBe('store_unavailable');
    await eventually(async () => (await gauge(metrics, 'gatehouse_store_up', { store: 'default-sqlite' })) === 0, 5_000, 100);
    expect(await gauge(metrics, 'gatehouse_webhook_pending', { route: 'hooks' })).toBe(1);
    expect(g.child.exitCode).toBeNull();

    execFileSync('prlimit', ['--pid', String(g.pid), '--fsize=unlimited:unlimited']);
    await eventually(async () => (await gauge(metrics, 'gatehouse_store_up', { store: 'default-sqlite' })) === 1, 5_000, 100);
    expect((await post(url, event('evt_2', 256 * 1024))).status).toBe(200);
    await eventually(async () => (await gauge(metrics, 'gatehouse_webhook_pending', { route: 'hooks' })) === 2);
    expect(g.log()).toContain('sqlite store writes again');
  });
});
