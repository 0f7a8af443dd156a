import { describe, expect, it } from 'vitest';
import { currentTat, hasToken, refundedTat, resultAt, shapeOf } from '../../../src/core/bucket.js';
import { formatRateLimit, policyMember, retryAfterSeconds } from '../../../src/quota/ratelimit-headers.js';

describe('token bucket (GCRA)', () => {
  it('refills at limit per per and holds burst tokens (default: limit)', () => {
    expect(shapeOf(10, 1000, undefined)).toEqual({ intervalMs: 100, burst: 10 });
    expect(shapeOf(2, 1000, 40)).toEqual({ intervalMs: 500, burst: 40 });
  });

  it('has a token while the theoretical arrival time stays within burst intervals of now', () => {
    const shape = shapeOf(1, 1000, 3);
    expect(hasToken(currentTat(undefined, 0), 0, shape)).toBe(true);
    expect(hasToken(2000, 0, shape)).toBe(true); // two taken, one left
    expect(hasToken(3000, 0, shape)).toBe(false);
    expect(hasToken(3000, 1, shape)).toBe(false);
    expect(hasToken(3000, 1000, shape)).toBe(true);
  });

  it('reports remaining tokens, time until full and time until the next token', () => {
    const shape = shapeOf(1, 1000, 3);
    expect(resultAt(1000, 0, shape, false)).toEqual({ remaining: 2, resetMs: 1000, retryAfterMs: 0 });
    expect(resultAt(3000, 0, shape, false)).toEqual({ remaining: 0, resetMs: 3000, retryAfterMs: 0 });
    expect(resultAt(3000, 250, shape, true)).toEqual({ remaining: 0, resetMs: 2750, retryAfterMs: 750 });
  });

  it('gives a token back without ever going past a full bucket', () => {
    const shape = shapeOf(1, 1000, 3);
    expect(refundedTat(3000, 0, shape)).toBe(2000);
    expect(refundedTat(500, 0, shape)).toBe(0);
  });
});

describe('RateLimit headers', () => {
  it('formats the structured fields of draft-ietf-httpapi-ratelimit-headers-11', () => {
    expect(policyMember('checkout-0', 10, 1000)).toBe('"checkout-0";q=10;w=1');
    expect(
      formatRateLimit(['a', 'b', 'c'], [{ remaining: 9, resetMs: 100, retryAfterMs: 0 }, undefined, { remaining: 0, resetMs: 3_600_000, retryAfterMs: 5 }]),
    ).toBe('"a";r=9;t=1, "c";r=0;t=3600');
  });

  it('never says Retry-After: 0', () => {
    expect(retryAfterSeconds(0)).toBe('1');
    expect(retryAfterSeconds(1001)).toBe('2');
  });
});
