import { describe, expect, it } from 'vitest';
import { admit, closedState, record, viewOf, type BreakerConfig, type BreakerState } from '../../../src/resilience/breaker.js';
import type { Outcome } from '../../../src/core/outcome.js';

const consecutive: BreakerConfig = { consecutiveFailures: 5, failureRatio: undefined, minRequests: 20, windowMs: 30_000, openForMs: 30_000, halfOpenRequests: 1 };
const ratio: BreakerConfig = { consecutiveFailures: undefined, failureRatio: 0.5, minRequests: 10, windowMs: 10_000, openForMs: 5_000, halfOpenRequests: 2 };

/** Admits and records one request at `now`, as the policy does. */
function run(state: BreakerState, outcome: Outcome, now: number, cfg: BreakerConfig): BreakerState {
  const a = admit(state, now, cfg);
  if (!a.admitted) throw new Error(`not admitted at ${now}`);
  return record(a.state, outcome, now, cfg, a.probe);
}

function runMany(state: BreakerState, outcomes: Outcome[], now: number, cfg: BreakerConfig): BreakerState {
  for (const o of outcomes) state = run(state, o, now, cfg);
  return state;
}

describe('circuit breaker (pure)', () => {
  it('opens after consecutiveFailures failures in a row, and a success resets the count', () => {
    let s = closedState(0);
    s = runMany(s, ['failure', 'failure', 'failure', 'failure', 'success'], 10, consecutive);
    expect(s.kind).toBe('closed');
    s = runMany(s, ['failure', 'failure', 'failure', 'failure'], 20, consecutive);
    expect(s.kind).toBe('closed');
    s = run(s, 'failure', 30, consecutive);
    expect(s).toMatchObject({ kind: 'open', openedAt: 30, cause: { by: 'consecutive', failures: 5 } });
  });

  it('refuses while open, with the time left until half-open', () => {
    const s: BreakerState = { kind: 'open', openedAt: 1_000, cause: { by: 'consecutive', failures: 5 } };
    expect(admit(s, 4_000, consecutive)).toEqual({ admitted: false, retryInMs: 27_000, state: s });
    expect(viewOf(s, 4_000, consecutive)).toEqual({ state: 'open', retryInMs: 27_000 });
  });

  it('half-opens after openFor and lets halfOpenRequests probes through, refusing the rest', () => {
    const open: BreakerState = { kind: 'open', openedAt: 0, cause: { by: 'consecutive', failures: 5 } };
    expect(viewOf(open, 30_000, consecutive)).toEqual({ state: 'half-open', retryInMs: 0 });
    const a = admit(open, 30_000, consecutive);
    expect(a).toMatchObject({ admitted: true, probe: true, state: { kind: 'half-open', probes: 1 } });
    const b = admit(a.state, 30_001, consecutive);
    expect(b).toMatchObject({ admitted: false, retryInMs: 0 });
  });

  it('closes once halfOpenRequests probes succeed', () => {
    let s: BreakerState = { kind: 'open', openedAt: 0, cause: { by: 'probe' } };
    const p1 = admit(s, 5_000, ratio);
    const p2 = admit(p1.state, 5_000, ratio);
    expect(p2.admitted).toBe(true);
    expect(admit(p2.state, 5_000, ratio).admitted).toBe(false); // two probes in flight: full
    s = record(p2.state, 'success', 5_010, ratio, true);
    expect(s).toMatchObject({ kind: 'half-open', successes: 1, probes: 1 });
    s = record(s, 'success', 5_020, ratio, true);
    expect(s.kind).toBe('closed');
  });

  it('re-opens on a failed probe, for another openFor', () => {
    const open: BreakerState = { kind: 'open', openedAt: 0, cause: { by: 'consecutive', failures: 5 } };
    const a = admit(open, 30_000, consecutive);
    const s = record(a.state, 'failure', 30_050, consecutive, true);
    expect(s).toEqual({ kind: 'open', openedAt: 30_050, cause: { by: 'probe' } });
    expect(admit(s, 59_000, consecutive).admitted).toBe(false);
    expect(admit(s, 60_050, consecutive).admitted).toBe(true);
  });

  it('does not count requests admitted before it opened or went half-open', () => {
    const open: BreakerState = { kind: 'open', openedAt: 0, cause: { by: 'consecutive', failures: 5 } };
    expect(record(open, 'failure', 10, consecutive, false)).toBe(open);
    const half = admit(open, 30_000, consecutive).state;
    expect(record(half, 'failure', 30_001, consecutive, false)).toBe(half); // a latecomer, not the probe
  });

  it('frees the probe slot when a probe is ignored (client went away)', () => {
    const open: BreakerState = { kind: 'open', openedAt: 0, cause: { by: 'consecutive', failures: 5 } };
    const a = admit(open, 30_000, consecutive);
    const s = record(a.state, 'ignored', 30_001, consecutive, true);
    expect(s).toMatchObject({ kind: 'half-open', probes: 0 });
    expect(admit(s, 30_002, consecutive).admitted).toBe(true);
  });

  it('ratio mode: opens when failureRatio of the window failed, only after minRequests', () => {
    let s = closedState(0);
    // 4 failures out of 8: ratio reached but fewer than minRequests (10) seen
    s = runMany(s, ['failure', 'success', 'failure', 'success', 'failure', 'success', 'failure', 'success'], 100, ratio);
    expect(s.kind).toBe('closed');
    s = run(s, 'success', 200, ratio); // 9 seen, 4 failed
    s = run(s, 'failure', 300, ratio); // 10 seen, 5 failed: 50%
    expect(s).toMatchObject({ kind: 'open', openedAt: 300, cause: { by: 'ratio', failures: 5, total: 10 } });
  });

  it('ratio mode: stays closed below the ratio, and consecutive failures alone do not open it', () => {
    let s = closedState(0);
    s = runMany(s, Array<Outcome>(20).fill('success'), 100, ratio);
    s = runMany(s, Array<Outcome>(15).fill('failure'), 200, ratio); // 15 of 35 = 43%
    expect(s.kind).toBe('closed');
    s = runMany(s, Array<Outcome>(5).fill('failure'), 300, ratio); // 20 of 40 = 50%
    expect(s.kind).toBe('open');
  });

  it('ratio mode: old requests slide out of the window', () => {
    let s = closedState(0);
    s = runMany(s, Array<Outcome>(9).fill('failure'), 1_000, ratio); // 9 failures in the first bucket
    // a window and a half later the first bucket weighs half: 4.5 failures of 4.5 + 2 seen
    s = runMany(s, ['success', 'success'], 15_000, ratio);
    expect(s.kind).toBe('closed'); // 6.5 < minRequests
    // two windows later the first bucket is gone: failures start from zero
    s = runMany(s, Array<Outcome>(9).fill('failure'), 40_000, ratio);
    expect(s.kind).toBe('closed');
    s = run(s, 'failure', 40_000, ratio);
    expect(s.kind).toBe('open');
  });

  it('a success in the common case returns the same state (no allocation)', () => {
    const s = closedState(0);
    expect(record(s, 'success', 5, consecutive, false)).toBe(s);
  });
});
