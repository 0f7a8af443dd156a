import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../../helpers/cleanup.js';
import { startRedis } from '../../helpers/redis.js';
import { FINISHED_KEPT_MS, type DeliveryStore, type NewDelivery, type NewMessage } from '../../../src/delivery/store.js';
import { createRedisDeliveryStore } from '../../../src/delivery/store-redis.js';
import { sqliteDeliveryStore } from '../../../src/delivery/store-sqlite.js';

let n = 0;
const message = (over: Partial<NewMessage> = {}): NewMessage => ({
  id: `id-${++n}`,
  route: 'r',
  kind: 'webhook',
  provider: 'stripe',
  eventId: `evt-${n}`,
  createdAt: 1_000,
  method: 'POST',
  path: '/hooks',
  headers: ['content-type', 'application/json'],
  body: Buffer.from(`{"n":${n}}`),
  requestId: `req-${n}`,
  trace: undefined,
  ...over,
});

const HOUR = 3_600_000;
const U = 'upstream';
const up = (id: string) => ({ id, destination: U });

/** One conformance suite for every store implementation (hono's common.case idea). */
function storeSuite(name: string, make: () => Promise<DeliveryStore>) {
  describe(`delivery store: ${name}`, () => {
    /** A webhook event: one delivery to the route's upstream, de-duplicated by its event id. */
    const accept = (s: DeliveryStore, m: NewMessage, nowMs: number, d: Partial<NewDelivery> = {}) =>
      s.accept(m, [{ destination: U, ...d }], nowMs, m.eventId === undefined ? undefined : { key: m.eventId, ttlMs: HOUR });
    const claim = (s: DeliveryStore, owner: string, nowMs: number, limit = 10, route = 'r', destination = U) =>
      s.claim(route, destination, owner, nowMs, nowMs + 60_000, limit);

    it('stores a message once and reports the same de-duplication key again as a duplicate until the ttl passes', async () => {
      const s = await make();
      expect(await accept(s, message({ eventId: 'evt_dup' }), 1_000)).toBe('stored');
      expect(await accept(s, message({ eventId: 'evt_dup' }), 2_000)).toBe('duplicate');
      expect(await accept(s, message({ eventId: 'evt_dup', route: 'other' }), 2_000)).toBe('stored');
      expect(await s.pending('r', U)).toBe(1);
      if (name !== 'redis') expect(await accept(s, message({ eventId: 'evt_dup' }), 1_000 + HOUR + 1)).toBe('stored'); // redis expires by its own clock
    });

    it('leases a due delivery to one owner, counts the attempt and keeps the body bytes', async () => {
      const s = await make();
      const a = message({ body: Buffer.from([0, 255, 10, 13]) });
      await accept(s, a, 1_000);
      const [claimed] = await claim(s, 'w1', 1_000);
      expect(claimed).toMatchObject({ id: a.id, destination: U, state: 'delivering', attempts: 1, headers: a.headers, eventId: a.eventId, kind: 'webhook' });
      expect(claimed!.body.equals(a.body)).toBe(true);
      expect(await claim(s, 'w2', 2_000)).toEqual([]);
      // the lease expires (its owner died): due again for another worker
      const [again] = await s.claim('r', U, 'w2', 61_001, 121_001, 10);
      expect(again).toMatchObject({ id: a.id, attempts: 2 });
      // the first owner's late outcome is ignored
      await s.retry(up(a.id), 'w1', 70_000, 'late', 503);
      expect(await s.claim('r', U, 'w3', 70_001, 130_000, 10)).toEqual([]);
    });

    it('retries at the given time, then delivers; delivered messages leave the queue and drop their body', async () => {
      const s = await make();
      const a = message();
      await accept(s, a, 1_000);
      await claim(s, 'w', 1_000);
      await s.retry(up(a.id), 'w', 5_000, 'HTTP 503', 503);
      expect(await s.nextDueAt('r', U)).toBe(5_000);
      expect(await claim(s, 'w', 4_999)).toEqual([]);
      const [b] = await claim(s, 'w', 5_000);
      expect(b).toMatchObject({ attempts: 2, lastError: 'HTTP 503', lastStatus: 503 });
      await s.delivered(up(a.id), 'w', 6_000, 200, false);
      expect(await s.pending('r', U)).toBe(0);
      expect(await s.nextDueAt('r', U)).toBeUndefined();
      const [recent] = await s.list({ kind: 'webhook', route: 'r', destination: U, limit: 10 });
      expect(recent).toMatchObject({ id: a.id, state: 'delivered', deliveredAt: 6_000, attempts: 2, lastStatus: 200 });
      expect(recent!.lastError).toBeUndefined(); // the failed try before it is no longer its last error
      expect(recent!.body.length).toBe(0);
    });

    it('dead-letters an exhausted delivery and replays it with fresh attempts; it leaves the list once delivered', async () => {
      const s = await make();
      const a = message();
      await accept(s, a, 1_000);
      await claim(s, 'w', 1_000);
      await s.dead(up(a.id), 'w', 2_000, 'connect ECONNREFUSED', undefined, true);
      expect(await s.pending('r', U)).toBe(0);
      expect(await s.deadCount('r', U)).toBe(1);
      expect(await s.listDead('webhook')).toMatchObject([{ id: a.id, state: 'dead', attempts: 1, lastError: 'connect ECONNREFUSED', deadAt: 2_000 }]);
      expect(await s.listDead('outbox')).toEqual([]);
      expect(await s.replay(up('nope'), 3_000)).toBeUndefined();
      expect(await s.replay(up(a.id), 3_000)).toMatchObject({ id: a.id, state: 'pending', attempts: 0 });
      expect(await s.replay(up(a.id), 3_000)).toBeUndefined(); // not dead any more
      expect(await s.listDead('webhook')).toHaveLength(1); // still listed until delivered
      expect(await s.deadCount('r', U)).toBe(0);
      const [b] = await claim(s, 'w', 3_000);
      expect(b).toMatchObject({ id: a.id, attempts: 1 });
      expect(b!.body.equals(a.body)).toBe(true);
      await s.delivered(up(a.id), 'w', 4_000, 204, false);
      expect(await s.listDead('webhook')).toEqual([]);
    });

    it('drops an exhausted delivery when dead letters are off', async () => {
      const s = await make();
      const a = message();
      await accept(s, a, 1_000);
      await claim(s, 'w', 1_000);
      await s.dead(up(a.id), 'w', 2_000, 'HTTP 500', 500, false);
      expect(await s.listDead('webhook')).toEqual([]);
      expect(await s.pending('r', U)).toBe(0);
      expect(await s.get(a.id)).toEqual([]);
      expect(await accept(s, message({ eventId: a.eventId }), 3_000)).toBe('duplicate');
    });

    it('releases a leased delivery untried: due at once, the attempt not counted', async () => {
      const s = await make();
      const a = message();
      await accept(s, a, 1_000);
      await claim(s, 'w', 1_000);
      await s.release(up(a.id), 'w', 1_500);
      expect(await claim(s, 'w2', 1_500)).toMatchObject([{ id: a.id, attempts: 1 }]);
    });

    it('lets one delivery per ordering key go at a time, in acceptance order, other keys unblocked', async () => {
      const s = await make();
      const a1 = message();
      const a2 = message();
      const b1 = message();
      await accept(s, a1, 1_000, { orderKey: 'cus_A' });
      await accept(s, a2, 1_000, { orderKey: 'cus_A' });
      await accept(s, b1, 1_000, { orderKey: 'cus_B' });
      expect((await claim(s, 'w', 1_000)).map((e) => e.id)).toEqual([a1.id, b1.id]);
      expect(await s.pending('r', U)).toBe(3);
      await s.retry(up(a1.id), 'w', 2_000, 'HTTP 503', 503);
      expect(await claim(s, 'w', 1_500)).toEqual([]); // a2 waits behind a1
      const [again] = await claim(s, 'w', 2_000);
      expect(again!.id).toBe(a1.id);
      await s.delivered(up(a1.id), 'w', 2_100, 200, false);
      expect((await claim(s, 'w', 2_100)).map((e) => e.id)).toEqual([a2.id]);
      // a key that went dead does not block the key
      const a3 = message();
      await accept(s, a3, 2_200, { orderKey: 'cus_A' });
      await s.dead(up(a2.id), 'w', 2_300, 'HTTP 500', 500, true);
      expect((await claim(s, 'w', 2_300)).map((e) => e.id)).toEqual([a3.id]);
    });

    it('cancels a pending delivery (the next of its key goes), and nothing finished', async () => {
      const s = await make();
      const a1 = message({ kind: 'outbox', eventId: undefined, idempotencyKey: 'k1' });
      const a2 = message({ kind: 'outbox', eventId: undefined });
      await accept(s, a1, 1_000, { orderKey: 'o' });
      await accept(s, a2, 1_000, { orderKey: 'o' });
      expect(await s.cancel(up(a1.id), 1_100)).toMatchObject({ id: a1.id, state: 'cancelled', idempotencyKey: 'k1' });
      expect(await s.cancel(up(a1.id), 1_100)).toBeUndefined();
      expect(await s.cancel(up('nope'), 1_100)).toBeUndefined();
      expect((await claim(s, 'w', 1_200)).map((e) => e.id)).toEqual([a2.id]);
      await s.delivered(up(a2.id), 'w', 1_300, 200, false);
      expect(await s.cancel(up(a2.id), 1_400)).toBeUndefined();
      const listed = await s.list({ kind: 'outbox', destination: U, limit: 10 });
      expect(listed.map((d) => [d.id, d.state])).toEqual([
        [a2.id, 'delivered'],
        [a1.id, 'cancelled'],
      ]);
      expect((await s.list({ kind: 'outbox', destination: U, states: ['cancelled'], limit: 10 })).map((d) => d.id)).toEqual([a1.id]);
      expect(await s.list({ kind: 'outbox', route: 'other', destination: U, limit: 10 })).toEqual([]);
    });

    it('adds the deliveries an outcome brings (a callback) in the same step, each with its own state and payload', async () => {
      const s = await make();
      const a = message({ kind: 'outbox', eventId: undefined });
      await s.accept(a, [{ destination: U, expiresAt: 50_000, attempts: 1, lastError: 'HTTP 503', lastStatus: 503 }], 1_000);
      const [first] = await claim(s, 'w', 1_000);
      expect(first).toMatchObject({ attempts: 2, expiresAt: 50_000, lastStatus: 503, lastError: 'HTTP 503' });
      await s.delivered(up(a.id), 'w', 2_000, 201, false, [{ destination: 'callback', payload: Buffer.from('{"status":"delivered"}') }]);
      const [cb] = await claim(s, 'w', 2_000, 10, 'r', 'callback');
      expect(cb).toMatchObject({ id: a.id, destination: 'callback', attempts: 1 });
      expect(cb!.payload!.toString()).toBe('{"status":"delivered"}');
      expect((await s.get(a.id)).map((d) => [d.destination, d.state])).toEqual([
        [U, 'delivered'],
        ['callback', 'delivering'],
      ]);
      await s.delivered({ id: a.id, destination: 'callback' }, 'w', 2_100, 200, false);
      expect(await s.pending('r', 'callback')).toBe(0);
    });

    it('keeps at most the latest 100 finished messages of a route, and never a pending or dead one', async () => {
      const s = await make();
      const dead = message();
      await accept(s, dead, 1_000);
      await claim(s, 'w', 1_000);
      await s.dead(up(dead.id), 'w', 1_000, 'HTTP 500', 500, true);
      for (let i = 0; i < 120; i++) {
        const e = message();
        await accept(s, e, 2_000);
        await claim(s, 'w', 2_000, 1);
        await s.delivered(up(e.id), 'w', 2_000, 200, false);
      }
      const waiting = message();
      await accept(s, waiting, 3_000);
      // finished ones younger than a day are all kept (a bulk replay reaches them); then the latest 100
      await s.maintain(4_000);
      if (name !== 'redis') expect((await s.list({ kind: 'webhook', route: 'r', destination: U, limit: 500 })).filter((e) => e.state === 'delivered')).toHaveLength(120);
      await s.maintain(4_000 + FINISHED_KEPT_MS);
      const recent = await s.list({ kind: 'webhook', route: 'r', destination: U, limit: 500 });
      if (name !== 'redis') expect(recent.filter((e) => e.state === 'delivered').length).toBeLessThanOrEqual(100); // redis: expiry
      expect(await s.listDead('webhook')).toHaveLength(1);
      expect(await s.pending('r', U)).toBe(1);
    });

    it('fans one message out to several destinations, each delivered on its own; lists them by time range and across destinations', async () => {
      const s = await make();
      const early = message({ createdAt: 1_000 });
      const late = message({ createdAt: 5_000 });
      const filtered = message({ createdAt: 5_500, body: Buffer.alloc(0) });
      await s.accept(early, [{ destination: 'a' }, { destination: 'b' }], 1_000, { key: early.eventId!, ttlMs: HOUR });
      await s.accept(late, [{ destination: 'a' }, { destination: 'b' }], 5_000, { key: late.eventId!, ttlMs: HOUR });
      expect(await s.accept(filtered, [], 5_500, { key: filtered.eventId!, ttlMs: HOUR })).toBe('stored');
      expect(await s.accept(message({ eventId: filtered.eventId }), [], 5_600, { key: filtered.eventId!, ttlMs: HOUR })).toBe('duplicate');
      expect(await s.pending('r', 'a')).toBe(2);
      expect(await s.pending('r', 'b')).toBe(2);
      // a is delivered, b dies: neither holds up the other
      for (const m of [early, late]) {
        await s.claim('r', 'a', 'w', 6_000, 66_000, 10);
        await s.delivered({ id: m.id, destination: 'a' }, 'w', 6_000, 200, true);
      }
      const [bEarly] = await s.claim('r', 'b', 'w', 6_000, 66_000, 1);
      await s.dead({ id: bEarly!.id, destination: 'b' }, 'w', 6_000, 'HTTP 500', 500, true);
      const all = await s.list({ kind: 'webhook', route: 'r', destination: undefined, limit: 100 });
      expect(all.map((d) => `${d.id} ${d.destination} ${d.state}`)).toEqual([
        `${late.id} a delivered`,
        `${late.id} b pending`,
        `${early.id} a delivered`,
        `${early.id} b dead`,
      ]);
      const ranged = await s.list({ kind: 'webhook', route: 'r', destination: undefined, from: 4_000, to: 6_000, limit: 100 });
      expect(ranged.map((d) => d.destination)).toEqual(['a', 'b']);
      expect(ranged.every((d) => d.id === late.id)).toBe(true);
      const deadOnly = await s.list({ kind: 'webhook', route: 'r', destination: 'b', states: ['dead', 'delivered'], from: 0, to: 10_000, limit: 100 });
      expect(deadOnly.map((d) => d.id)).toEqual([early.id]);
      // a delivered one is replayed only when asked for; its body was kept
      expect(await s.replay({ id: early.id, destination: 'a' }, 7_000)).toBeUndefined();
      const again = await s.replay({ id: early.id, destination: 'a' }, 7_000, ['delivered', 'dead']);
      expect(again).toMatchObject({ state: 'pending', attempts: 0 });
      expect(again!.body.equals(early.body)).toBe(true);
      expect(await s.pending('r', 'a')).toBe(1);
      expect(await s.replay({ id: early.id, destination: 'b' }, 7_000, ['delivered', 'dead'])).toMatchObject({ state: 'pending' });
      expect(await s.pending('r', 'b')).toBe(2);
    });

    it('lists the latest messages, newest first', async () => {
      const s = await make();
      const ids = [];
      for (let i = 0; i < 3; i++) {
        const e = message();
        ids.push(e.id);
        await accept(s, e, 1_000 + i);
      }
      expect((await s.list({ kind: 'webhook', route: 'r', destination: U, limit: 2 })).map((e) => e.id)).toEqual([ids[2], ids[1]]);
    });
  });
}

storeSuite('sqlite', () => {
  const db = new Database(join(mkdtempSync(join(tmpdir(), 'gatehouse-dl-')), 'test.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  onCleanup(() => db.close());
  return Promise.resolve(sqliteDeliveryStore(db, true));
});

storeSuite('memory', () => {
  const db = new Database(':memory:');
  onCleanup(() => db.close());
  return Promise.resolve(sqliteDeliveryStore(db, false));
});

storeSuite('redis', async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url, { keyPrefix: `gh-test-${++n}:`, maxRetriesPerRequest: 0, enableOfflineQueue: true });
  onCleanup(() => client.disconnect());
  return createRedisDeliveryStore(client);
});

describe('delivery store: sqlite upgrade', () => {
  it('moves webhook events stored before the shared engine into its tables, their ids still claimed', async () => {
    const db = new Database(':memory:');
    onCleanup(() => db.close());
    db.exec(`
      CREATE TABLE webhook_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, route TEXT NOT NULL, provider TEXT NOT NULL,
        event_id TEXT NOT NULL, received_at INTEGER NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, headers TEXT NOT NULL, body BLOB,
        order_key TEXT, request_id TEXT NOT NULL, trace TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
        owner TEXT, lease_until INTEGER, last_error TEXT, dead_at INTEGER, delivered_at INTEGER);
      CREATE TABLE webhook_dedupe (route TEXT NOT NULL, event_id TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (route, event_id)) WITHOUT ROWID;
      INSERT INTO webhook_events (id, route, provider, event_id, received_at, method, path, headers, body, request_id, state, attempts, next_at, last_error)
        VALUES ('old-1', 'r', 'github', 'evt-old', 500, 'POST', '/h', '["x-a","1"]', X'7B7D', 'req', 'pending', 2, 900, 'HTTP 503');
      INSERT INTO webhook_dedupe VALUES ('r', 'evt-old', 10000000);
    `);
    const s = sqliteDeliveryStore(db, false);
    expect(await claim1(s)).toMatchObject({ id: 'old-1', eventId: 'evt-old', provider: 'github', attempts: 3, lastError: 'HTTP 503', headers: ['x-a', '1'] });
    expect(await s.accept(message({ eventId: 'evt-old' }), [{ destination: U }], 1_000, { key: 'evt-old', ttlMs: HOUR })).toBe('duplicate');
    expect(db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE name = 'webhook_events'`).get()).toEqual({ n: 0 });
  });
});

describe('delivery store: Redis upgrade', () => {
  it('moves webhook events stored before the shared engine (webhook:* keys) into its keys, id claims and order kept', async () => {
    const redis = await startRedis();
    const client = new Redis(redis.url, { keyPrefix: 'up:', maxRetriesPerRequest: 0 });
    onCleanup(() => client.disconnect());
    const ev = (id: string, state: string, extra: Record<string, string | number> = {}) =>
      client.hset(`webhook:ev:${id}`, { id, route: 'r', eventId: `evt-${id}`, provider: 'github', receivedAt: 500, method: 'POST', path: '/h', headers: '["x-a","1"]', body: '{}', orderKey: '', requestId: 'q', trace: '', state, attempts: 1, nextAt: 900, owner: '', ...extra });
    await ev('p1', 'pending', { orderKey: 'k' });
    await ev('p2', 'waiting', { orderKey: 'k' });
    await client.rpush('webhook:order:r:k', 'p1', 'p2');
    await ev('d1', 'dead', { deadAt: 700, lastError: 'HTTP 500' });
    await ev('x1', 'delivered', { deliveredAt: 800 });
    await client.zadd('webhook:due:r', 900, 'p1');
    await client.set('webhook:dedupe:r:evt-p1', 'p1', 'PX', 3_600_000);
    const s = createRedisDeliveryStore(client);
    await s.maintain(1_000);
    expect((await s.claim('r', U, 'w', 1_000, 61_000, 10)).map((d) => [d.id, d.eventId, d.attempts, d.headers])).toEqual([['p1', 'evt-p1', 2, ['x-a', '1']]]);
    expect(await s.listDead('webhook')).toMatchObject([{ id: 'd1', state: 'dead', lastError: 'HTTP 500', deadAt: 700 }]);
    expect(await s.accept(message({ eventId: 'evt-p1' }), [{ destination: U }], 1_000, { key: 'evt-p1', ttlMs: HOUR })).toBe('duplicate');
    await s.delivered(up('p1'), 'w', 1_100, 200, false);
    expect((await s.claim('r', U, 'w', 1_200, 61_200, 10)).map((d) => d.id)).toEqual(['p2']); // the order list came along
    // KEYS takes no key prefix: ask with the whole name (the delivered event's hash was dropped too)
    expect(await client.keys('up:webhook:*')).toEqual([]);
    expect((await client.keys('up:delivery:*')).length).toBeGreaterThan(5);
  });
});

const claim1 = async (s: DeliveryStore) => (await s.claim('r', U, 'w', 1_000, 61_000, 10))[0];
