import { describe, expect, it } from 'vitest';
import { ageOf, keepMs, refreshed, requestFacts, scanAnswer, servesOnError, storability, toEntry, ttlParam, usable, type CacheRules } from '../../../src/cache/entry.js';

const SHARED: CacheRules = { shared: true, defaultTtl: 0, staleWhileRevalidate: 0, staleIfError: 0 };
const T0 = 1_700_000_000_000;
const date = (ms: number) => new Date(ms).toUTCString();
const anonymous = requestFacts(undefined, undefined, false);
const entryOf = (headers: string[], rules = SHARED, at = T0) => toEntry(rules, 200, scanAnswer(headers), Buffer.from('body'), at, at, []);

describe('what a shared cache may store (RFC 9111 §3, §3.5)', () => {
  it('stores explicit freshness, refuses no-store, private, Set-Cookie, Vary: * and uncacheable statuses', () => {
    const ok = scanAnswer(['Cache-Control', 'max-age=60']);
    expect(storability(SHARED, 200, ok, anonymous)).toBeUndefined();
    expect(storability(SHARED, 500, ok, anonymous)).toBe('status');
    expect(storability(SHARED, 200, scanAnswer(['cache-control', 'no-store, max-age=60']), anonymous)).toBe('no-store');
    expect(storability(SHARED, 200, ok, requestFacts('no-store', undefined, false))).toBe('no-store');
    expect(storability(SHARED, 200, scanAnswer(['cache-control', 'private, max-age=60']), anonymous)).toBe('private');
    expect(storability({ ...SHARED, shared: false }, 200, scanAnswer(['cache-control', 'private, max-age=60']), anonymous)).toBeUndefined();
    expect(storability(SHARED, 200, scanAnswer(['cache-control', 'max-age=60', 'set-cookie', 'a=b']), anonymous)).toBe('set-cookie');
    expect(storability(SHARED, 200, scanAnswer(['cache-control', 'max-age=60', 'vary', 'Accept, *']), anonymous)).toBe('vary');
  });

  it('an answer to an authorized request only with public, s-maxage or must-revalidate', () => {
    const authorized = requestFacts(undefined, undefined, true);
    expect(storability(SHARED, 200, scanAnswer(['cache-control', 'max-age=60']), authorized)).toBe('authorization');
    for (const cc of ['public, max-age=60', 's-maxage=60', 'max-age=60, must-revalidate']) {
      expect(storability(SHARED, 200, scanAnswer(['cache-control', cc]), authorized)).toBeUndefined();
    }
    expect(storability({ ...SHARED, shared: false }, 200, scanAnswer(['cache-control', 'max-age=60']), authorized)).toBeUndefined();
  });

  it('an answer that says nothing is stored only for defaultTtl, a validator or a stale window', () => {
    const bare = scanAnswer(['content-type', 'text/plain']);
    expect(storability(SHARED, 200, bare, anonymous)).toBe('no-freshness');
    expect(storability({ ...SHARED, defaultTtl: 5 }, 200, bare, anonymous)).toBeUndefined();
    expect(storability(SHARED, 200, scanAnswer(['etag', '"x"']), anonymous)).toBeUndefined();
    expect(storability({ ...SHARED, staleIfError: 60 }, 200, scanAnswer(['cache-control', 'max-age=0']), anonymous)).toBeUndefined();
  });

  it('keeps no hop-by-hop field, no Age and no Content-Length in the stored headers', () => {
    const facts = scanAnswer(['Connection', 'x-internal', 'X-Internal', '1', 'Keep-Alive', 'timeout=5', 'Age', '3', 'Content-Length', '4', 'ETag', '"e"']);
    expect(facts.kept).toEqual(['ETag', '"e"']);
    expect(facts.age).toBe(3);
  });
});

describe('freshness and age (RFC 9111 §4.2)', () => {
  it('lifetime: s-maxage over max-age over Expires - Date over defaultTtl', () => {
    expect(entryOf(['cache-control', 'max-age=60, s-maxage=10']).lifetime).toBe(10);
    expect(entryOf(['cache-control', 'max-age=60, s-maxage=10'], { ...SHARED, shared: false }).lifetime).toBe(60);
    expect(entryOf(['date', date(T0), 'expires', date(T0 + 30_000)]).lifetime).toBe(30);
    expect(entryOf(['expires', 'garbage']).lifetime).toBe(0);
    expect(entryOf([], { ...SHARED, defaultTtl: 7 }).lifetime).toBe(7);
  });

  it('age: the Age field plus the response delay, or the apparent age from Date, whichever is larger; then time since', () => {
    const facts = scanAnswer(['cache-control', 'max-age=100', 'age', '10', 'date', date(T0 - 20_000)]);
    const e = toEntry(SHARED, 200, facts, Buffer.alloc(0), T0 - 2_000, T0, []);
    expect(e.initialAge).toBe(20); // apparent 20 s beats 10 + 2 s
    expect(ageOf(e, T0 + 5_000)).toBe(25);
  });

  it('fresh, then stale-while-revalidate, then validate; must-revalidate and no-cache always validate', () => {
    const e = entryOf(['cache-control', 'max-age=10, stale-while-revalidate=20']);
    expect(usable(e, anonymous, T0 + 5_000)).toEqual({ use: 'fresh', ttl: 5 });
    expect(usable(e, anonymous, T0 + 15_000)).toEqual({ use: 'stale-while-revalidate', ttl: -5 });
    expect(usable(e, anonymous, T0 + 31_000).use).toBe('validate');
    expect(usable(entryOf(['cache-control', 'max-age=10, must-revalidate, stale-while-revalidate=20']), anonymous, T0 + 15_000).use).toBe('validate');
    expect(usable(entryOf(['cache-control', 'no-cache', 'etag', '"e"']), anonymous, T0).use).toBe('validate');
  });

  it("the request's no-cache, Pragma: no-cache, max-age and min-fresh", () => {
    const e = entryOf(['cache-control', 'max-age=60']);
    expect(usable(e, requestFacts('no-cache', undefined, false), T0).use).toBe('validate');
    expect(usable(e, requestFacts(undefined, 'no-cache', false), T0).use).toBe('validate');
    expect(usable(e, requestFacts('max-age=5', undefined, false), T0 + 10_000).use).toBe('validate');
    expect(usable(e, requestFacts('min-fresh=55', undefined, false), T0 + 10_000).use).toBe('validate');
    expect(usable(e, requestFacts('max-age=30', undefined, false), T0 + 10_000).use).toBe('fresh');
  });

  it("stale-if-error from the answer, else the route's default, silenced by must-revalidate", () => {
    const rules = { ...SHARED, staleIfError: 100 };
    expect(servesOnError(entryOf(['cache-control', 'max-age=10'], rules), T0 + 100_000)).toBe(true);
    expect(servesOnError(entryOf(['cache-control', 'max-age=10'], rules), T0 + 111_000)).toBe(false);
    expect(servesOnError(entryOf(['cache-control', 'max-age=10, stale-if-error=5'], rules), T0 + 20_000)).toBe(false);
    expect(servesOnError(entryOf(['cache-control', 'max-age=10, must-revalidate'], rules), T0 + 11_000)).toBe(false);
  });

  it('a 304 refreshes the stored fields and the freshness, and keeps the body', () => {
    const e = entryOf(['cache-control', 'max-age=0', 'etag', '"e"', 'content-type', 'application/json', 'x-version', '1']);
    const r = refreshed(SHARED, e, scanAnswer(['cache-control', 'max-age=60', 'x-version', '2', 'content-length', '0']), T0 + 1_000, T0 + 1_000);
    expect(r.lifetime).toBe(60);
    expect(r.body.toString()).toBe('body');
    expect(r.headers).toEqual(['etag', '"e"', 'content-type', 'application/json', 'cache-control', 'max-age=60', 'x-version', '2']);
    expect(usable(r, anonymous, T0 + 2_000).use).toBe('fresh');
  });

  it('keeps an entry for its lifetime and stale windows, an hour longer when it can be revalidated', () => {
    expect(keepMs(entryOf(['cache-control', 'max-age=10, stale-if-error=50']))).toBe(60_000);
    expect(keepMs(entryOf(['cache-control', 'max-age=10', 'etag', '"e"']))).toBe(3_610_000);
    expect(ttlParam(4.7)).toBe('ttl=4');
    expect(ttlParam(-12.3)).toBe('ttl=-12');
    expect(ttlParam(-0.2)).toBe('ttl=0');
  });
});
