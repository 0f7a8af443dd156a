import { describe, expect, it } from 'vitest';
import { shapeOf } from '../../../src/core/bucket.js';
import { createPace, UNPACED } from '../../../src/core/pace.js';

describe('delivery pace (a token bucket per destination)', () => {
  it('lets a burst of `limit` through at once, then one per interval', () => {
    const pace = createPace(shapeOf(10, 1000, undefined)); // 10 per second, burst 10
    for (let i = 0; i < 10; i++) expect(pace.take(0)).toBe(0);
    expect(pace.take(0)).toBe(100); // the 11th waits one interval
    expect(pace.take(50)).toBe(50);
    expect(pace.take(100)).toBe(0);
    expect(pace.take(100)).toBe(100);
  });

  it('honours burst: a smaller burst spreads the first deliveries out', () => {
    const pace = createPace(shapeOf(4, 1000, 1)); // 4 per second, one at a time
    expect(pace.take(0)).toBe(0);
    expect(pace.take(0)).toBe(250);
    expect(pace.take(250)).toBe(0);
    expect(pace.take(260)).toBe(240);
  });

  it('never holds more than burst tokens after a quiet spell', () => {
    const pace = createPace(shapeOf(2, 1000, undefined));
    expect(pace.take(0)).toBe(0);
    const later = 60_000;
    expect(pace.take(later)).toBe(0);
    expect(pace.take(later)).toBe(0);
    expect(pace.take(later)).toBe(500);
  });

  it('takes back a token given for a try that was not made', () => {
    const pace = createPace(shapeOf(1, 1000, 1));
    expect(pace.take(0)).toBe(0);
    expect(pace.take(0)).toBe(1000);
    pace.refund(0);
    expect(pace.take(0)).toBe(0);
    pace.refund(5000); // long after: a full bucket stays full, no extra token
    expect(pace.take(5000)).toBe(0);
    expect(pace.take(5000)).toBe(1000);
  });

  it('paces a steady stream at exactly limit per period', () => {
    const pace = createPace(shapeOf(5, 1000, 1));
    let now = 0;
    let sent = 0;
    while (now < 10_000) {
      const wait = pace.take(now);
      if (wait === 0) sent++;
      else now += wait;
    }
    expect(sent).toBe(50);
    expect(UNPACED.take(now)).toBe(0);
  });
});
