import { describe, expect, it } from 'vitest';
import { AdaptiveLimit, fixedLimit } from '../../../src/budget/adaptive.js';

/**
 * The adaptive concurrency limit against a provider that allows K requests in flight, simulated
 * in rounds: each round sends `limit` requests at once (the limit is what holds them back);
 * those beyond K get a concurrency 429.
 */
function run(limit: AdaptiveLimit, K: number, rounds: number, rttMs = 20) {
  let now = 0;
  let rejected = 0;
  const rejectedByRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const n = limit.limit;
    const started = now;
    for (let i = 0; i < n; i++) expect(limit.tryAcquire()).toBe(true);
    expect(limit.tryAcquire()).toBe(false);
    now += rttMs;
    let here = 0;
    for (let i = 1; i <= n; i++) {
      const over = i > K;
      if (over) here++;
      limit.sample(over ? 'concurrency' : 'ok', started, rttMs, n, now);
      limit.release();
    }
    rejected += here;
    rejectedByRound.push(here);
  }
  return { rejected, rejectedByRound };
}

describe('adaptive concurrency limit', () => {
  it('finds a concurrency ceiling and probes above it less and less often', () => {
    const limit = new AdaptiveLimit({ min: 1, max: 100, initial: 20 });
    const { rejectedByRound } = run(limit, 8, 2_000);
    expect(limit.limit).toBeGreaterThanOrEqual(7);
    expect(limit.limit).toBeLessThanOrEqual(9);
    const early = rejectedByRound.slice(0, 200).reduce((a, b) => a + b, 0);
    const late = rejectedByRound.slice(1_000).reduce((a, b) => a + b, 0);
    // 1,000 late rounds send ~8,000 requests: fewer than 0.1% of them hit the ceiling
    expect(late).toBeLessThanOrEqual(8);
    expect(early).toBeGreaterThan(late);
  });

  it('grows additively while nothing pushes back, up to max', () => {
    const limit = new AdaptiveLimit({ min: 1, max: 30, initial: 5 });
    run(limit, 1_000, 200);
    expect(limit.limit).toBe(30);
  });

  it('cuts multiplicatively on overload, once per round trip, never below min', () => {
    const limit = new AdaptiveLimit({ min: 4, max: 100, initial: 40 });
    for (let i = 0; i < 40; i++) expect(limit.tryAcquire()).toBe(true);
    // forty 503s of requests sent together: one cut, not forty
    for (let i = 0; i < 40; i++) limit.sample('overload', 0, 20, 40, 20);
    expect(limit.limit).toBe(36);
    for (let t = 1; t < 100; t++) limit.sample('overload', t * 100, 20, 40, t * 100 + 20);
    expect(limit.limit).toBe(4);
  });

  it('treats a latency rise as overload', () => {
    const limit = new AdaptiveLimit({ min: 1, max: 100, initial: 20 });
    let now = 0;
    for (let i = 0; i < 50; i++) limit.sample('ok', now, 10, 20, (now += 10));
    expect(limit.limit).toBeGreaterThanOrEqual(20);
    const before = limit.limit;
    for (let i = 0; i < 50; i++) limit.sample('ok', now, 300, 20, (now += 300));
    expect(limit.limit).toBeLessThan(before);
  });

  it('a fixed limit is just a counter', () => {
    const limit = fixedLimit(2);
    expect([limit.tryAcquire(), limit.tryAcquire(), limit.tryAcquire()]).toEqual([true, true, false]);
    limit.release();
    expect(limit.tryAcquire()).toBe(true);
    expect(limit.limit).toBe(2);
  });
});
