import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { eventually, request } from '../helpers/http.js';
import { spawnGatehouse } from '../helpers/process.js';
import { startRedis } from '../helpers/redis.js';
import { startUpstream } from '../helpers/upstream.js';

const yaml = (upstream: string, stores = '', store = '') => `
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams: { erp: { endpoints: [${upstream}] } }
${stores}
routes:
  - name: erp-orders
    listener: out
    match: { pathPrefix: /erp }
    upstream: erp
    timeout: 1s
    delivery: { mode: async, backoff: { base: 100ms, max: 500ms }${store} }
`;

/** The ERP: answers each Idempotency-Key's write with 201 (counted), or stalls while told to. */
async function erp() {
  const answered = new Map<string, number>();
  let stalling = true;
  const up = await startUpstream((req, res) => {
    if (stalling) return; // never answers: tries in flight when gatehouse dies
    const key = String(req.headers['idempotency-key']);
    answered.set(key, (answered.get(key) ?? 0) + 1);
    res.writeHead(201).end();
  });
  return {
    url: up.url,
    answered,
    received: () => up.received.length,
    release() {
      stalling = false;
      for (const s of up.sockets) s.destroy();
    },
  };
}

/** 200 writes, 25 at a time: every one answered 202 before the process is killed. */
async function burst(url: string): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < 200; i += 25) {
    const batch = await Promise.all(
      Array.from({ length: 25 }, (_, j) => request(`${url}/erp/orders`, { method: 'POST', body: JSON.stringify({ order: i + j }), headers: { 'content-type': 'application/json' } })),
    );
    for (const res of batch) {
      expect(res.status).toBe(202);
      keys.push(res.json().idempotencyKey);
    }
  }
  return keys;
}

async function crashAndRestart(config: string) {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-outbox-crash-'));
  const e = await erp();
  const first = await spawnGatehouse(config.replace('ERP', e.url), { dir });
  // a Redis store is connected a moment after the start (until then a write is refused: 503)
  if (config.includes('type: redis')) await eventually(async () => /gatehouse_store_up\{store="shared"\} 1/.test((await request(first.admin('/metrics'))).text));
  const keys = await burst(first.url('out'));
  await first.kill('SIGKILL'); // right after the last 202: most are still pending, some in flight
  expect(first.child.signalCode).toBe('SIGKILL');
  expect(e.answered.size).toBe(0);
  e.release();
  const second = await spawnGatehouse(config.replace('ERP', e.url), { dir });
  await eventually(() => keys.every((k) => e.answered.get(k) === 1), 30_000, 100);
  // none twice: every key answered once, and nothing else arrived
  expect([...e.answered.values()].every((n) => n === 1)).toBe(true);
  expect(e.answered.size).toBe(200);
  const delivered = await eventually(async () => {
    const list = (await request(second.admin('/admin/outbox?status=pending'))).json().messages as unknown[];
    return list.length === 0 ? list : undefined;
  }, 10_000);
  expect(delivered).toEqual([]);
}

describe('outbox: kill -9 right after a burst of 202s', () => {
  it('sqlite: after a restart every accepted message is delivered, none twice', async () => {
    await crashAndRestart(yaml('ERP'));
  });

  it('redis: after a restart every accepted message is delivered, none twice', async () => {
    const redis = await startRedis();
    await crashAndRestart(yaml('ERP', `stores: { shared: { type: redis, url: ${redis.url}, commandTimeout: 2s } }`, ', store: shared'));
  });
});
