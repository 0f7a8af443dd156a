import { describe, expect, it } from 'vitest';
import { compileHedge, decideHedge } from '../../../src/resilience/hedge.js';

describe('the hedge decision', () => {
  const plan = compileHedge({ after: 100, max: 2 }, undefined);

  it('hedges up to max times per request', () => {
    expect(decideHedge(plan, 0, 0, 10)).toEqual({ hedge: true });
    expect(decideHedge(plan, 1, 0, 10)).toEqual({ hedge: true });
    expect(decideHedge(plan, 2, 0, 10)).toEqual({ hedge: false, reason: 'max' });
  });

  it('counts against the retry budget: max(3, budget x first tries in flight)', () => {
    expect(plan.budget).toBe(0.2);
    expect(decideHedge(plan, 0, 3, 10)).toEqual({ hedge: false, reason: 'budget' });
    expect(decideHedge(plan, 0, 3, 20)).toEqual({ hedge: true });
    expect(compileHedge({ after: 100, max: 1 }, 0.5).budget).toBe(0.5);
  });
});
