import { describe, expect, it } from 'vitest';
import { backoffDelayMs, fullJitter } from '../../../src/core/backoff.js';
import { retryBudgetAllows } from '../../../src/resilience/retry-budget.js';

describe('back-off with full jitter', () => {
  it('does not wait before the first attempt', () => {
    expect(fullJitter(100, 2_000, () => 0.999).delayMs).toBe(0);
  });

  it('doubles the ceiling with each retry, up to max', () => {
    const top = () => 0.999999;
    const b = fullJitter(100, 1_000, top);
    const delays = [b.next(), b.next().next(), b.next().next().next(), b.next().next().next().next(), b.next().next().next().next().next()].map((x) => x.delayMs);
    expect(delays).toEqual([99, 199, 399, 799, 999]);
  });

  it('is uniform between 0 and the ceiling', () => {
    expect(backoffDelayMs(100, 2_000, () => 0, 3)).toBe(0);
    expect(backoffDelayMs(100, 2_000, () => 0.5, 3)).toBe(200);
  });

  it('is immutable: next() leaves the value it came from unchanged', () => {
    const b = fullJitter(100, 2_000, () => 0.5).next();
    b.next();
    expect(b.delayMs).toBe(50);
  });

  it('stays finite for absurd retry counts', () => {
    expect(backoffDelayMs(100, 2_000, () => 0.5, 5_000)).toBe(1_000);
  });
});

describe('retry budget', () => {
  it('allows at least 3 retries in flight however little traffic there is', () => {
    expect(retryBudgetAllows(0, 0, 0.2)).toBe(true);
    expect(retryBudgetAllows(2, 1, 0.2)).toBe(true);
    expect(retryBudgetAllows(3, 1, 0.2)).toBe(false);
  });

  it('allows budget x requests in flight under load', () => {
    expect(retryBudgetAllows(19, 100, 0.2)).toBe(true);
    expect(retryBudgetAllows(20, 100, 0.2)).toBe(false);
    expect(retryBudgetAllows(49, 100, 0.5)).toBe(true);
  });

  it('with budget 0 allows only the minimum concurrency', () => {
    expect(retryBudgetAllows(2, 1_000, 0)).toBe(true);
    expect(retryBudgetAllows(3, 1_000, 0)).toBe(false);
  });
});
