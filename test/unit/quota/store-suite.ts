import { describe, expect, it } from 'vitest';
import { shapeOf, type BucketShape } from '../../../src/core/bucket.js';
import type { QuotaStore, TakeOutcome } from '../../../src/quota/stores.js';

export type SuiteStore = Pick<QuotaStore, 'take' | 'refund'>;

/**
 * One conformance suite for every quota store (hono's common.case idea): the memory store and
 * Redis must give the same answers for the same calls. `makeStore` gets the clock to use (ms).
 */
export function runQuotaStoreSuite(label: string, makeStore: (now: () => number) => Promise<SuiteStore> | SuiteStore): void {
  describe(`quota store conformance: ${label}`, () => {
    // 2 per second, bursts of 4: one token every 500 ms
    const shape: BucketShape = shapeOf(2, 1000, 4);
    let t = 1_700_000_000_000;
    const clock = () => t;
    const setup = async () => {
      t = 1_700_000_000_000;
      return makeStore(clock);
    };
    const take = async (store: SuiteStore, ...keys: string[]): Promise<TakeOutcome> => store.take(keys.map(() => shape), keys);

    it('admits burst requests at once, then refuses with the time until the next token', async () => {
      const store = await setup();
      const seen = [];
      for (let i = 0; i < 4; i++) seen.push(await take(store, 'a'));
      expect(seen.map((o) => o.allowed)).toEqual([true, true, true, true]);
      expect(seen.map((o) => o.buckets[0]!.remaining)).toEqual([3, 2, 1, 0]);
      expect(seen.map((o) => o.buckets[0]!.resetMs)).toEqual([500, 1000, 1500, 2000]);
      expect(seen.every((o) => o.buckets[0]!.retryAfterMs === 0)).toBe(true);
      const refused = await take(store, 'a');
      expect(refused.allowed).toBe(false);
      expect(refused.buckets[0]).toEqual({ remaining: 0, resetMs: 2000, retryAfterMs: 500 });
    });

    it('refills at limit per per, one token every per/limit', async () => {
      const store = await setup();
      for (let i = 0; i < 4; i++) await take(store, 'a');
      t += 499;
      expect((await take(store, 'a')).allowed).toBe(false);
      t += 1;
      expect((await take(store, 'a')).allowed).toBe(true);
      expect((await take(store, 'a')).allowed).toBe(false);
      t += 1000;
      const two = [await take(store, 'a'), await take(store, 'a'), await take(store, 'a')];
      expect(two.map((o) => o.allowed)).toEqual([true, true, false]);
      expect(two[2]!.buckets[0]!.retryAfterMs).toBe(500);
    });

    it('never holds more than burst tokens, however long it rested', async () => {
      const store = await setup();
      await take(store, 'a');
      t += 3_600_000;
      const seen = [];
      for (let i = 0; i < 5; i++) seen.push((await take(store, 'a')).allowed);
      expect(seen).toEqual([true, true, true, true, false]);
    });

    it('keeps the buckets of different keys apart', async () => {
      const store = await setup();
      for (let i = 0; i < 4; i++) await take(store, 'a');
      expect((await take(store, 'a')).allowed).toBe(false);
      const other = await take(store, 'b');
      expect(other.allowed).toBe(true);
      expect(other.buckets[0]!.remaining).toBe(3);
    });

    it('takes from several buckets all or nothing: a refusal by one leaves the others untouched', async () => {
      const store = await setup();
      for (let i = 0; i < 4; i++) await take(store, 'empty');
      const both = await take(store, 'full', 'empty');
      expect(both.allowed).toBe(false);
      expect(both.buckets[0]).toEqual({ remaining: 4, resetMs: 0, retryAfterMs: 0 });
      expect(both.buckets[1]!.retryAfterMs).toBe(500);
      const alone = await take(store, 'full');
      expect(alone.buckets[0]!.remaining).toBe(3);
      const again = await take(store, 'full', 'other');
      expect(again.allowed).toBe(true);
      expect(again.buckets.map((b) => b.remaining)).toEqual([2, 3]);
    });

    it('applies each bucket its own shape', async () => {
      const store = await setup();
      const strict = shapeOf(1, 60_000, 1);
      const first = await store.take([shape, strict], ['loose', 'strict']);
      expect(first.allowed).toBe(true);
      expect(first.buckets.map((b) => b.remaining)).toEqual([3, 0]);
      expect(first.buckets[1]!.resetMs).toBe(60_000);
      const second = await store.take([shape, strict], ['loose', 'strict']);
      expect(second.allowed).toBe(false);
      expect(second.buckets[1]!.retryAfterMs).toBe(60_000);
      expect(second.buckets[0]!.remaining).toBe(3);
    });

    it('gives a token back on refund, and never more than a full bucket', async () => {
      const store = await setup();
      for (let i = 0; i < 4; i++) await take(store, 'a');
      await store.refund([shape], ['a']);
      const back = await take(store, 'a');
      expect(back.allowed).toBe(true);
      expect(back.buckets[0]!.remaining).toBe(0);
      await store.refund([shape, shape, shape, shape, shape], ['b', 'b', 'b', 'b', 'b']);
      const seen = [];
      for (let i = 0; i < 5; i++) seen.push((await take(store, 'b')).allowed);
      expect(seen).toEqual([true, true, true, true, false]);
    });

    it('admits exactly burst requests out of many concurrent ones', async () => {
      const store = await setup();
      const results = await Promise.all(Array.from({ length: 25 }, () => take(store, 'hot')));
      expect(results.filter((o) => o.allowed)).toHaveLength(4);
    });

    it('applies takes made together in the order they were made, each all or nothing', async () => {
      const store = await setup();
      const together = await Promise.all([
        ...Array.from({ length: 4 }, () => take(store, 'x', 'y')),
        take(store, 'x', 'z'), // x is empty by now: refused, z untouched
        take(store, 'z'),
        take(store, 'y'),
      ]);
      expect(together.map((o) => o.allowed)).toEqual([true, true, true, true, false, true, false]);
      expect(together[4]!.buckets.map((b) => b.retryAfterMs)).toEqual([500, 0]);
      expect(together[5]!.buckets[0]!.remaining).toBe(3);
    });

    it('handles fractional intervals without drifting (3 per second)', async () => {
      const store = await setup();
      const third = shapeOf(3, 1000, 3);
      for (let i = 0; i < 3; i++) expect((await store.take([third], ['f'])).allowed).toBe(true);
      for (let step = 0; step < 30; step++) {
        t += 1000 / 3;
        expect((await store.take([third], ['f'])).allowed).toBe(true);
        expect((await store.take([third], ['f'])).allowed).toBe(false);
      }
    });
  });
}
