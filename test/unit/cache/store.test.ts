import { describe, expect, it } from 'vitest';
import { scanAnswer, toEntry, type CacheRules } from '../../../src/cache/entry.js';
import { createMemoryStore, decodeVariants, encodeVariants } from '../../../src/cache/store.js';
import type { Clock } from '../../../src/core/clock.js';

const RULES: CacheRules = { shared: true, defaultTtl: 0, staleWhileRevalidate: 0, staleIfError: 0 };
const clock = (): Clock & { t: number } => {
  const c = { t: 0, now: () => c.t, monotonic: () => c.t, sleep: () => Promise.resolve() };
  return c;
};
const answer = (bytes: number, varyValues: string[] = [], vary: string[] = []) =>
  toEntry(RULES, 200, { ...scanAnswer(['cache-control', 'max-age=60']), vary }, Buffer.alloc(bytes, 'a'), 0, 0, varyValues);

describe('the memory cache store', () => {
  it('evicts the least recently used keys once over maxSize; a hit makes a key recent', () => {
    const c = clock();
    const store = createMemoryStore(10_000, c);
    store.put('a', answer(3_000), 60_000);
    store.put('b', answer(3_000), 60_000);
    store.put('c', answer(3_000), 60_000);
    expect(store.get('a')).toBeDefined(); // a is now the most recent
    store.put('d', answer(3_000), 60_000);
    expect(store.get('b')).toBeUndefined();
    expect(store.get('a')).toBeDefined();
    expect(store.get('d')).toBeDefined();
    expect(store.bytes).toBeLessThanOrEqual(10_000);
    expect(store.maxEntryBytes).toBe(2_500);
  });

  it('drops a key after keepMs, and keeps one variant per set of Vary values', () => {
    const c = clock();
    const store = createMemoryStore(100_000, c);
    store.put('k', answer(10, ['en'], ['accept-language']), 1_000);
    store.put('k', answer(20, ['fr'], ['accept-language']), 1_000);
    store.put('k', answer(30, ['en'], ['accept-language']), 1_000);
    expect(store.get('k')!.map((v) => [v.varyValues[0], v.body.length])).toEqual([
      ['fr', 20],
      ['en', 30],
    ]);
    c.t = 1_001;
    expect(store.get('k')).toBeUndefined();
    expect(store.bytes).toBe(0);
  });

  it('round-trips variants through the serialized form (sqlite, Redis); garbage decodes as a miss', () => {
    const variants = [answer(5, ['en'], ['accept-language']), answer(0, ['fr'], ['accept-language'])];
    const back = decodeVariants(encodeVariants(variants))!;
    expect(back).toEqual(variants);
    expect(decodeVariants(Buffer.from('nonsense'))).toBeUndefined();
  });
});
