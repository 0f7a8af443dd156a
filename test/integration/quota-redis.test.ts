import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { startRedis } from '../helpers/redis.js';
import { echo, startUpstream } from '../helpers/upstream.js';

/** `commandTimeout` stays at its 100 ms default unless a test needs Redis to be slow-but-right. */
const config = (upstream: string, redisUrl: string, quota: string, commandTimeout = '100ms') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
stores:
  shared: { type: redis, url: ${redisUrl}, keyPrefix: "gh-test:", commandTimeout: ${commandTimeout} }
upstreams: { app: { endpoints: [${upstream}] } }
quotas:
  partner: ${quota}
routes:
  - { name: api, listener: in, match: { pathPrefix: / }, upstream: app, quota: [partner] }
`;

const storeMode = async (g: TestGatehouse): Promise<string> => (await request(g.admin('/admin/quotas'))).json().quotas.partner.storeMode;

describe('quotas in a shared Redis store', () => {
  it('admits at most the limit in total across two gatehouses sharing one Redis', async () => {
    const redis = await startRedis();
    const up = await startUpstream(echo);
    // a loaded CI machine can delay a reply past 100 ms, which (rightly) means a local decision
    const yaml = config(up.url, redis.url, '{ limit: 5, per: 1m, store: shared }', '5s');
    const a = await startGatehouse(yaml);
    const b = await startGatehouse(yaml);
    await eventually(async () => (await storeMode(a)) === 'redis' && (await storeMode(b)) === 'redis');
    const statuses = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? a : b).fetch('in', `/r${i}`).then((r) => r.status)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(11);
    expect(up.received).toHaveLength(5);
    for (const g of [a, b]) expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { result: 'fallback' })).toBe(0);
    expect(await redis.command('DBSIZE')).toBe(':1\r\n'); // one bucket, under the store's keyPrefix
    expect(await redis.command('KEYS gh-test:q:partner:*')).toMatch(/gh-test:q:partner:[0-9a-f]{8}:\*/);
  });

  it('never writes a header value (an API key) into Redis key names in clear', async () => {
    const redis = await startRedis();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, redis.url, '{ limit: 5, per: 1m, key: "header:x-api-key", store: shared }', '5s'));
    await eventually(async () => (await storeMode(g)) === 'redis');
    expect((await g.fetch('in', '/x', { headers: { 'x-api-key': 'sk_live_4eC39HqLyjWDarjtT1zdp7dc' } })).status).toBe(200);
    const keys = await redis.command('KEYS *');
    expect(keys).toMatch(/gh-test:q:partner:[0-9a-f]{8}:h:#[\w-]{43}/);
    expect(keys).not.toContain('sk_live');
  });

  it('gives back the per-process token when the Redis limit of the same route refuses (limits in two stores)', async () => {
    const redis = await startRedis();
    const up = await startUpstream(echo);
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
stores: { shared: { type: redis, url: ${redis.url}, commandTimeout: 5s } }
upstreams: { app: { endpoints: [${up.url}] } }
routes:
  - name: api
    listener: in
    match: { pathPrefix: / }
    upstream: app
    quota:
      - { limit: 1, per: 1h, key: "header:x-user" }
      - { limit: 2, per: 1h, store: shared }
`);
    const as = (user: string) => g.fetch('in', '/x', { headers: { 'x-user': user } });
    const activeUsers = async () => (await request(g.admin('/admin/quotas'))).json().quotas['api-0'].activeKeys;
    await eventually(async () => (await request(g.admin('/admin/quotas'))).json().quotas['api-1'].storeMode === 'redis');
    expect((await as('u1')).status).toBe(200);
    expect((await as('u2')).status).toBe(200);
    expect(await activeUsers()).toBe(2);
    const refused = await as('u3'); // u3's own bucket had a token; the shared one did not
    expect(refused.status).toBe(429);
    expect(refused.json().detail).toContain("quota 'api-1' allows 2 requests per 3600s");
    expect(refused.headers.ratelimit).toBe('"api-0";r=1;t=0, "api-1";r=0;t=3600');
    expect(await activeUsers()).toBe(2); // u3's token went back: its bucket is full again
    expect(up.received).toHaveLength(2);
  });

  it('falls back to per-process limits at once when Redis dies, says so once, and returns to Redis when it is back', async () => {
    const redis = await startRedis();
    const up = await startUpstream(echo);
    // Redis dies rather than hangs here: no need to risk a slow reply counting as a failure
    const g = await startGatehouse(config(up.url, redis.url, '{ limit: 1000, per: 1m, store: shared }', '2s'));
    await eventually(async () => (await storeMode(g)) === 'redis');
    expect((await g.fetch('in', '/before')).status).toBe(200);

    await redis.kill();
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const res = await g.fetch('in', `/during${i}`);
      expect(res.status).toBe(200);
      expect(res.headers.ratelimit).toMatch(/^"partner";r=\d+;t=\d+$/);
      expect(performance.now() - t0).toBeLessThan(1000); // never waits for a dead Redis
    }
    expect(await storeMode(g)).toBe('fallback');
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'api', result: 'fallback' })).toBeGreaterThanOrEqual(4);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_store_up', { store: 'shared' })).toBe(0);
    const warnings = g.log.json.filter((l) => l.msg.startsWith('quota store unavailable'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ store: 'shared', level: 'warn' });

    await redis.restart();
    await eventually(async () => (await storeMode(g)) === 'redis', 10_000, 50);
    expect(g.log.json.filter((l) => l.msg.startsWith('quota store answers again'))).toHaveLength(1);
    const fallbacks = sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'api', result: 'fallback' });
    expect((await g.fetch('in', '/after')).status).toBe(200);
    expect(await redis.command('DBSIZE')).toBe(':1\r\n'); // counted in the fresh Redis again
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'api', result: 'fallback' })).toBe(fallbacks);
  });

  it('answers within the 100 ms command timeout when Redis hangs, then stops asking it until it answers again', async () => {
    const redis = await startRedis();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, redis.url, '{ limit: 1000, per: 1m, store: shared }'));
    await eventually(async () => (await storeMode(g)) === 'redis');
    expect((await g.fetch('in', '/warm')).status).toBe(200);
    await eventually(async () => (await storeMode(g)) === 'redis'); // even if a loaded machine made /warm slow

    redis.freeze();
    try {
      expect((await g.fetch('in', '/hung')).status).toBe(200);
      const hung = g.accessLog.json.find((l) => l.path === '/hung');
      expect(hung.durationMs).toBeGreaterThanOrEqual(95); // it did wait for Redis ...
      expect(hung.durationMs).toBeLessThan(600); // ... for one command timeout, not more
      expect(await storeMode(g)).toBe('fallback');
      expect((await g.fetch('in', '/next')).status).toBe(200);
      const next = g.accessLog.json.find((l) => l.path === '/next');
      expect(next.durationMs).toBeLessThan(hung.durationMs); // no longer waits at all
    } finally {
      redis.thaw();
    }
    await eventually(async () => (await storeMode(g)) === 'redis', 10_000, 50);
  });
});
