import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { request } from '../helpers/http.js';
import { echo, startUpstream } from '../helpers/upstream.js';

describe('quota keys are bounded (SPEC §3.1, maxKeys)', () => {
  it('keeps at most maxKeys buckets under thousands of distinct keys, and an active key stays limited', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
quotas:
  per-key: { limit: 2, per: 1h, key: "header:x-api-key", maxKeys: 500 }
routes: [{ name: api, listener: in, match: { pathPrefix: / }, upstream: app, quota: [per-key] }]
`);
    const pool = new Pool(g.url('in'), { connections: 16 });
    onCleanup(() => pool.close());
    const as = async (key: string) => {
      const res = await pool.request({ path: '/x', method: 'GET', headers: { 'x-api-key': key } });
      await res.body.dump();
      return res.statusCode;
    };
    expect([await as('active'), await as('active'), await as('active')]).toEqual([200, 200, 429]);

    const statuses = new Map<number, number>();
    let activeAllowed = 0;
    for (let batch = 0; batch < 15; batch++) {
      // 100 new keys at once, then the active client again
      const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => as(`key-${batch}-${i}`)));
      for (const s of answers) statuses.set(s, (statuses.get(s) ?? 0) + 1);
      if ((await as('active')) !== 429) activeAllowed++;
    }
    expect(Object.fromEntries(statuses)).toEqual({ 200: 1500 }); // every new key has its full bucket
    expect(activeAllowed).toBe(0); // the active key kept its empty bucket among 1,500 others

    const view = (await request(g.admin('/admin/quotas'))).json();
    expect(view.quotas['per-key'].activeKeys).toBe(500);
    expect(up.received).toHaveLength(2 + 1500);
  });
});
