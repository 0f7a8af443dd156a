import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../../helpers/cleanup.js';
import { startRedis } from '../../helpers/redis.js';
import type { IncomingEvent, WebhookStore } from '../../../src/webhook/store.js';
import { createRedisWebhookStore } from '../../../src/webhook/store-redis.js';
import { sqliteWebhookStore } from '../../../src/webhook/store-sqlite.js';

let n = 0;
const event = (over: Partial<IncomingEvent> = {}): IncomingEvent => ({
  id: `id-${++n}`,
  route: 'r',
  provider: 'stripe',
  eventId: `evt-${n}`,
  receivedAt: 1_000,
  method: 'POST',
  path: '/hooks',
  headers: ['content-type', 'application/json'],
  body: Buffer.from(`{"n":${n}}`),
  orderKey: undefined,
  requestId: `req-${n}`,
  trace: undefined,
  ...over,
});

const HOUR = 3_600_000;

/** One conformance suite for every store implementation (hono's common.case idea). */
function storeSuite(name: string, make: () => Promise<WebhookStore>) {
  describe(`webhook store: ${name}`, () => {
    it('stores an event once and reports the same event id again as a duplicate until the ttl passes', async () => {
      const s = await make();
      const a = event({ eventId: 'evt_dup' });
      expect(await s.accept(a, HOUR, 1_000)).toBe('stored');
      expect(await s.accept(event({ eventId: 'evt_dup' }), HOUR, 2_000)).toBe('duplicate');
      expect(await s.accept(event({ eventId: 'evt_dup', route: 'other' }), HOUR, 2_000)).toBe('stored');
      expect(await s.pending('r')).toBe(1);
      if (name !== 'redis') expect(await s.accept(event({ eventId: 'evt_dup' }), HOUR, 1_000 + HOUR + 1)).toBe('stored'); // redis expires by its own clock
    });

    it('leases a due event to one owner, counts the attempt and keeps the body bytes', async () => {
      const s = await make();
      const a = event({ body: Buffer.from([0, 255, 10, 13]) });
      await s.accept(a, HOUR, 1_000);
      const [claimed] = await s.claim('r', 'w1', 1_000, 61_000, 10);
      expect(claimed).toMatchObject({ id: a.id, state: 'delivering', attempts: 1, headers: a.headers, eventId: a.eventId });
      expect(claimed!.body.equals(a.body)).toBe(true);
      expect(await s.claim('r', 'w2', 2_000, 62_000, 10)).toEqual([]);
      // the lease expires (its owner died): due again for another worker
      const [again] = await s.claim('r', 'w2', 61_001, 121_001, 10);
      expect(again).toMatchObject({ id: a.id, attempts: 2 });
      // the first owner's late outcome is ignored
      await s.retry(a.id, 'w1', 70_000, 'late');
      expect(await s.claim('r', 'w3', 70_001, 130_000, 10)).toEqual([]);
    });

    it('retries at the given time, then delivers; delivered events leave the queue and drop their body', async () => {
      const s = await make();
      const a = event();
      await s.accept(a, HOUR, 1_000);
      await s.claim('r', 'w', 1_000, 61_000, 10);
      await s.retry(a.id, 'w', 5_000, 'HTTP 503');
      expect(await s.nextDueAt('r')).toBe(5_000);
      expect(await s.claim('r', 'w', 4_999, 64_999, 10)).toEqual([]);
      const [b] = await s.claim('r', 'w', 5_000, 65_000, 10);
      expect(b).toMatchObject({ attempts: 2, lastError: 'HTTP 503' });
      await s.delivered(a.id, 6_000, false);
      expect(await s.pending('r')).toBe(0);
      expect(await s.nextDueAt('r')).toBeUndefined();
      const [recent] = await s.recent('r', 10);
      expect(recent).toMatchObject({ id: a.id, state: 'delivered', deliveredAt: 6_000, attempts: 2 });
      expect(recent!.lastError).toBeUndefined(); // the failed try before it is no longer its last error
      expect(recent!.body.length).toBe(0);
    });

    it('dead-letters an exhausted event and replays it with fresh attempts; it leaves the list once delivered', async () => {
      const s = await make();
      const a = event();
      await s.accept(a, HOUR, 1_000);
      await s.claim('r', 'w', 1_000, 61_000, 10);
      await s.dead(a.id, 'w', 2_000, 'connect ECONNREFUSED', true);
      expect(await s.pending('r')).toBe(0);
      expect(await s.listDead()).toMatchObject([{ id: a.id, state: 'dead', attempts: 1, lastError: 'connect ECONNREFUSED', deadAt: 2_000 }]);
      expect(await s.replay('nope', 3_000)).toBeUndefined();
      expect(await s.replay(a.id, 3_000)).toMatchObject({ id: a.id, state: 'pending', attempts: 0 });
      expect(await s.listDead()).toHaveLength(1); // still listed until delivered
      const [b] = await s.claim('r', 'w', 3_000, 63_000, 10);
      expect(b).toMatchObject({ id: a.id, attempts: 1 });
      expect(b!.body.equals(a.body)).toBe(true);
      await s.delivered(a.id, 4_000, false);
      expect(await s.listDead()).toEqual([]);
    });

    it('drops an exhausted event when dead letters are off', async () => {
      const s = await make();
      const a = event();
      await s.accept(a, HOUR, 1_000);
      await s.claim('r', 'w', 1_000, 61_000, 10);
      await s.dead(a.id, 'w', 2_000, 'HTTP 500', false);
      expect(await s.listDead()).toEqual([]);
      expect(await s.pending('r')).toBe(0);
      expect(await s.accept(event({ eventId: a.eventId }), HOUR, 3_000)).toBe('duplicate');
    });

    it('releases a leased event untried: due at once, the attempt not counted', async () => {
      const s = await make();
      const a = event();
      await s.accept(a, HOUR, 1_000);
      await s.claim('r', 'w', 1_000, 61_000, 10);
      await s.release(a.id, 'w', 1_500);
      expect(await s.claim('r', 'w2', 1_500, 61_500, 10)).toMatchObject([{ id: a.id, attempts: 1 }]);
    });

    it('lets one event per ordering key go at a time, in arrival order, other keys unblocked', async () => {
      const s = await make();
      const a1 = event({ orderKey: 'cus_A' });
      const a2 = event({ orderKey: 'cus_A' });
      const b1 = event({ orderKey: 'cus_B' });
      for (const e of [a1, a2, b1]) await s.accept(e, HOUR, 1_000);
      expect((await s.claim('r', 'w', 1_000, 61_000, 10)).map((e) => e.id)).toEqual([a1.id, b1.id]);
      expect(await s.pending('r')).toBe(3);
      await s.retry(a1.id, 'w', 2_000, 'HTTP 503');
      expect(await s.claim('r', 'w', 1_500, 61_500, 10)).toEqual([]); // a2 waits behind a1
      const [again] = await s.claim('r', 'w', 2_000, 62_000, 10);
      expect(again!.id).toBe(a1.id);
      await s.delivered(a1.id, 2_100, false);
      expect((await s.claim('r', 'w', 2_100, 62_100, 10)).map((e) => e.id)).toEqual([a2.id]);
      // a key that went dead does not block the key
      const a3 = event({ orderKey: 'cus_A' });
      await s.accept(a3, HOUR, 2_200);
      await s.dead(a2.id, 'w', 2_300, 'HTTP 500', true);
      expect((await s.claim('r', 'w', 2_300, 62_300, 10)).map((e) => e.id)).toEqual([a3.id]);
    });

    it('keeps at most the latest 100 delivered events of a route, and never a pending or dead one', async () => {
      const s = await make();
      const dead = event();
      await s.accept(dead, HOUR, 1_000);
      await s.claim('r', 'w', 1_000, 61_000, 10);
      await s.dead(dead.id, 'w', 1_000, 'HTTP 500', true);
      for (let i = 0; i < 120; i++) {
        const e = event();
        await s.accept(e, HOUR, 2_000);
        await s.claim('r', 'w', 2_000, 62_000, 1);
        await s.delivered(e.id, 2_000, false);
      }
      const waiting = event();
      await s.accept(waiting, HOUR, 3_000);
      await s.maintain(4_000);
      const recent = await s.recent('r', 500);
      expect(recent.filter((e) => e.state === 'delivered').length).toBeLessThanOrEqual(100);
      expect(await s.listDead()).toHaveLength(1);
      expect(await s.pending('r')).toBe(1);
    });

    it('keeps the latest events for the recent view, newest first', async () => {
      const s = await make();
      const ids = [];
      for (let i = 0; i < 3; i++) {
        const e = event();
        ids.push(e.id);
        await s.accept(e, HOUR, 1_000 + i);
      }
      expect((await s.recent('r', 2)).map((e) => e.id)).toEqual([ids[2], ids[1]]);
    });
  });
}

storeSuite('sqlite', () => {
  const db = new Database(join(mkdtempSync(join(tmpdir(), 'gatehouse-wh-')), 'test.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  onCleanup(() => db.close());
  return Promise.resolve(sqliteWebhookStore(db, true));
});

storeSuite('memory', () => {
  const db = new Database(':memory:');
  onCleanup(() => db.close());
  return Promise.resolve(sqliteWebhookStore(db, false));
});

storeSuite('redis', async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url, { keyPrefix: 'gh-test:', maxRetriesPerRequest: 0, enableOfflineQueue: true });
  onCleanup(() => client.disconnect());
  return createRedisWebhookStore(client);
});
