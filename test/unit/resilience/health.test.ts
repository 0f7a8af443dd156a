import { describe, expect, it } from 'vitest';
import { leastRequest, roundRobin } from '../../../src/resilience/balancer.js';
import { ejectionTimeMs, INITIAL_CHECK_STATE, mayEject, recordCheck, type CheckState } from '../../../src/resilience/health.js';

const t = { unhealthyThreshold: 3, healthyThreshold: 2 };
const rules = { consecutiveFailures: 5, baseTimeMs: 30_000, maxTimeMs: 300_000, maxPercent: 50 };

describe('active health thresholds', () => {
  it('marks an endpoint unhealthy after unhealthyThreshold failed checks in a row', () => {
    let s: CheckState = INITIAL_CHECK_STATE;
    for (const passed of [false, false, true, false, false]) s = recordCheck(s, passed, t);
    expect(s.healthy).toBe(true);
    s = recordCheck(s, false, t);
    expect(s).toEqual({ healthy: false, streak: 0 });
  });

  it('brings it back after healthyThreshold passed checks in a row', () => {
    let s: CheckState = { healthy: false, streak: 0 };
    s = recordCheck(s, true, t);
    s = recordCheck(s, false, t);
    s = recordCheck(s, true, t);
    expect(s.healthy).toBe(false);
    s = recordCheck(s, true, t);
    expect(s.healthy).toBe(true);
  });
});

describe('passive ejection rules', () => {
  it('ejects at most half of the endpoints and never the last one in rotation', () => {
    expect(mayEject(2, 0, 2, rules)).toBe(true);
    expect(mayEject(2, 1, 1, rules)).toBe(false);
    expect(mayEject(4, 1, 3, rules)).toBe(true);
    expect(mayEject(4, 2, 2, rules)).toBe(false);
    expect(mayEject(1, 0, 1, rules)).toBe(false);
    expect(mayEject(3, 0, 1, rules)).toBe(false); // two are failing health checks: keep the last
  });

  it('ejects for 30 s, doubling on repeat, up to 5 min', () => {
    expect([0, 1, 2, 3, 4, 5, 40].map((n) => ejectionTimeMs(n, rules))).toEqual([30_000, 60_000, 120_000, 240_000, 300_000, 300_000, 300_000]);
  });
});

describe('load balancing', () => {
  it('round-robin takes each endpoint in turn and follows a shrinking rotation', () => {
    const pick = roundRobin<string>();
    expect([1, 2, 3, 4].map(() => pick(['a', 'b', 'c']))).toEqual(['a', 'b', 'c', 'a']);
    expect(pick(['a'])).toBe('a');
    expect(pick([])).toBeUndefined();
  });

  it('least-request picks the less loaded of two random endpoints', () => {
    const eps = [{ inFlight: 5 }, { inFlight: 1 }, { inFlight: 9 }];
    const draws = [0.1, 0.4]; // i = 0, j = floor(0.4 * 2) = 0 -> bumped to 1
    let k = 0;
    const pick = leastRequest<(typeof eps)[number]>(() => draws[k++ % 2]!);
    expect(pick(eps)).toBe(eps[1]);
    const two = [{ inFlight: 3 }, { inFlight: 2 }];
    expect(leastRequest<(typeof two)[number]>(Math.random)(two)).toBe(two[1]); // with two, always the lighter
  });
});
