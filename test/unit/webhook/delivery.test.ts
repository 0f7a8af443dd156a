import { describe, expect, it } from 'vitest';
import { leaseMs, retryDelayMs } from '../../../src/webhook/delivery.js';

describe('delivery back-off', () => {
  it('doubles from base up to max, with equal jitter between half and all of it', () => {
    const low = () => 0;
    const high = () => 1;
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(n, 1_000, 10_000, high))).toEqual([1_000, 2_000, 4_000, 8_000, 10_000]);
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(n, 1_000, 10_000, low))).toEqual([500, 1_000, 2_000, 4_000, 5_000]);
    expect(retryDelayMs(40, 1_000, 600_000, high)).toBe(600_000);
  });

  it('leases an event for longer than an attempt may take', () => {
    expect(leaseMs(30_000)).toBeGreaterThan(30_000 * 2);
    expect(leaseMs(1_000)).toBe(3_000);
  });
});
