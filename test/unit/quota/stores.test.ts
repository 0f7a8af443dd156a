import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createMemoryQuotaStore, createRedisQuotaStore } from '../../../src/quota/stores.js';
import { shapeOf } from '../../../src/quota/bucket.js';
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
