import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createMemoryQuotaStore, createRedisQuotaStore, type TakeOutcome } from '../../../src/quota/stores.js';
import { shapeOf } from '../../../src/core/bucket.js';
import { onCleanup } from '../../helpers/cleanup.js';
import { startRedis } from '../../helpers/redis.js';
import { runQuotaStoreSuite } from './store-suite.js';

async function redisClient(): Promise<{ client: Redis; redis: Awaited<ReturnType<typeof startRedis>> }> {
  const redis = await startRedis();
  const client = new Redis(redis.url, { keyPrefix: 'test:', enableOfflineQueue: true, maxRetriesPerRequest: 0 });
  onCleanup(() => client.disconnect());
  return { client, redis };
}

runQuotaStoreSuite('memory', (now) => createMemoryQuotaStore('memory', now));

runQuotaStoreSuite('redis', async (now) => {
  const { client } = await redisClient();
  return createRedisQuotaStore('redis', () => client, now);
});

describe('redis quota store', () => {
  it('lets Redis expire a bucket once it would be full again', async () => {
    const { client } = await redisClient();
    const store = createRedisQuotaStore('redis', () => client);
    // 5 per minute: one token taken comes back in 12 s, and the key with it
    await store.take([shapeOf(5, 60_000, 5)], ['k']);
    const ttl = await client.pttl('k');
    expect(ttl).toBeGreaterThan(11_000);
    expect(ttl).toBeLessThanOrEqual(12_000);
  });

  it("counts on the Redis server's clock when given none", async () => {
    const { client } = await redisClient();
    const store = createRedisQuotaStore('redis', () => client);
    const shape = shapeOf(1, 3_600_000, 2);
    const seen = [await store.take([shape], ['k']), await store.take([shape], ['k']), await store.take([shape], ['k'])];
    expect(seen.map((o) => o.allowed)).toEqual([true, true, false]);
    // the next token is due an hour after the first take, less the milliseconds this test took
    expect(seen[2]!.buckets[0]!.retryAfterMs).toBeGreaterThan(3_599_000);
    expect(seen[2]!.buckets[0]!.retryAfterMs).toBeLessThanOrEqual(3_600_000);
  });
});

describe('memory quota store: bounded keys (SPEC §3.1, maxKeys)', () => {
  const T0 = 1_700_000_000_000;

  it('keeps at most maxKeys (default 100,000) buckets per quota under 330,000 distinct keys, and limits still hold for an active key', () => {
    let t = T0;
    const store = createMemoryQuotaStore('memory', () => t);
    const shape = { ...shapeOf(10, 3_600_000, 10), space: 'q:api:' }; // 10 per hour: no bucket fills up again in this test
    for (let i = 0; i < 10; i++) expect((store.take([shape], ['q:api:active']) as TakeOutcome).allowed).toBe(true);
    let refusedNew = 0;
    let allowedActive = 0;
    let largest = 0;
    for (let i = 0; i < 330_000; i++) {
      t += 0.01;
      if (!(store.take([shape], [`q:api:k${i}`]) as TakeOutcome).allowed) refusedNew++;
      if (i % 1000 === 0 && (store.take([shape], ['q:api:active']) as TakeOutcome).allowed) allowedActive++;
      if (i % 10_000 === 0) largest = Math.max(largest, store.countKeys('q:api:')!);
    }
    expect(refusedNew).toBe(0);
    expect(allowedActive).toBe(0); // the active key kept its empty bucket all along
    expect(largest).toBeLessThanOrEqual(100_000);
    expect(store.countKeys('q:api:')).toBe(100_000);
    expect((store.take([shape], ['q:api:active']) as TakeOutcome).allowed).toBe(false);
    // another quota's space has its own bound
    const other = { ...shapeOf(1, 1000, 1), space: 'q:other:', maxKeys: 5 };
    for (let i = 0; i < 50; i++) void store.take([other], [`o${i}`]);
    expect(store.countKeys('q:other:')).toBe(5);
    expect(store.countKeys('q:api:')).toBe(100_000);
  });

  it('at the cap forgets full buckets before one that still holds a count', () => {
    let t = T0;
    const store = createMemoryQuotaStore('memory', () => t);
    const shape = { ...shapeOf(1, 1000, 5), space: 's', maxKeys: 3 };
    const take = (key: string) => store.take([shape], [key]) as TakeOutcome;
    for (let i = 0; i < 5; i++) take('busy'); // empty: full again only in 5 s
    take('b');
    take('c');
    t += 2000; // b and c are full again; busy has 2 of 5 tokens back
    expect(take('d').allowed).toBe(true); // the cap: b and c go, busy stays, although least recently used
    expect(store.countKeys('s')).toBe(2);
    const busy = take('busy');
    expect(busy.allowed).toBe(true);
    expect(busy.buckets[0]!.remaining).toBe(1); // its history was kept
  });

  it('when none is full, forgets the least recently used bucket (a refused take counts as use)', () => {
    let t = T0;
    const store = createMemoryQuotaStore('memory', () => t);
    const shape = { ...shapeOf(1, 3_600_000, 1), space: 's', maxKeys: 2 };
    const take = (key: string) => store.take([shape], [key]) as TakeOutcome;
    expect(take('a').allowed).toBe(true);
    expect(take('b').allowed).toBe(true);
    t += 1;
    expect(take('a').allowed).toBe(false); // a is refused, and now more recent than b
    expect(take('c').allowed).toBe(true); // b goes
    expect(take('a').allowed).toBe(false); // a still counted
    expect(take('b').allowed).toBe(true); // b starts over (and c, now least recent, goes)
  });
});
