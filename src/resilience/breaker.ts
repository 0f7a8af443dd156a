import { GatehouseError } from '../core/errors.js';
import type { Exchange } from '../core/exchange.js';
import type { Clock } from '../core/clock.js';
import type { Outcome } from '../core/outcome.js';

/**
 * The circuit breaker of one upstream (Traefik's CircuitBreaker; in Envoy terms closer to outlier
 * detection for a whole cluster). The decision is pure — `admit` and `record` take a state and the
 * time and return a new state, as cockatiel separates a breaker's decision from its mechanics —
 * and `createBreaker` is the thin stateful wrapper a policy uses.
 *
 *   closed --(consecutiveFailures in a row, or failureRatio over window after minRequests)--> open
 *   open --(openFor passed; the next request becomes a probe)--> half-open
 *   half-open --(halfOpenRequests probes succeed)--> closed;  --(a probe fails)--> open
 */

export interface BreakerConfig {
  /** Open after this many failures in a row; undefined = this trigger is off. */
  readonly consecutiveFailures: number | undefined;
  /** Open when this share of the requests in the window failed; undefined = off. */
  readonly failureRatio: number | undefined;
  /** The ratio counts only once the window holds this many requests. */
  readonly minRequests: number;
  readonly windowMs: number;
  readonly openForMs: number;
  readonly halfOpenRequests: number;
}

/** Why a breaker opened: said in the 503's detail and in the transition's span event. */
export type OpenCause =
  | { readonly by: 'consecutive'; readonly failures: number }
  | { readonly by: 'ratio'; readonly failures: number; readonly total: number }
  | { readonly by: 'probe' };

/**
 * A tagged union, so impossible states cannot be written. The failure-ratio window is two
 * fixed buckets of `windowMs`, the previous one weighted by how much of it still overlaps the
 * sliding window (the sliding-window-counter approximation Kong and Cloudflare use): O(1) memory
 * and one small object per request.
 */
export type BreakerState =
  | {
      readonly kind: 'closed';
      readonly consecutive: number;
      /** Start of the current bucket. */
      readonly bucketAt: number;
      readonly total: number;
      readonly failures: number;
      readonly prevTotal: number;
      readonly prevFailures: number;
    }
  | { readonly kind: 'open'; readonly openedAt: number; readonly cause: OpenCause }
  | {
      readonly kind: 'half-open';
      /** Probes admitted and not finished yet. */
      readonly probes: number;
      readonly successes: number;
    };

export type BreakerStateName = BreakerState['kind'];

export const closedState = (nowMs: number): BreakerState => ({
  kind: 'closed',
  consecutive: 0,
  bucketAt: nowMs,
  total: 0,
  failures: 0,
  prevTotal: 0,
  prevFailures: 0,
});

export type Admission =
  | { readonly admitted: true; readonly probe: boolean; readonly state: BreakerState }
  | { readonly admitted: false; readonly retryInMs: number; readonly state: BreakerState };

/** May a request go to the upstream now? An open breaker turns half-open once `openFor` passed. */
export function admit(state: BreakerState, nowMs: number, cfg: BreakerConfig): Admission {
  switch (state.kind) {
    case 'closed':
      return { admitted: true, probe: false, state };
    case 'open': {
      const retryInMs = state.openedAt + cfg.openForMs - nowMs;
      if (retryInMs > 0) return { admitted: false, retryInMs, state };
      return { admitted: true, probe: true, state: { kind: 'half-open', probes: 1, successes: 0 } };
    }
    case 'half-open':
      if (state.probes + state.successes < cfg.halfOpenRequests) {
        return { admitted: true, probe: true, state: { kind: 'half-open', probes: state.probes + 1, successes: state.successes } };
      }
      // every probe slot is taken: the answer is only a moment away
      return { admitted: false, retryInMs: 0, state };
  }
}

/**
 * The outcome of an admitted request. `probe` is what `admit` said: a request admitted while
 * closed that finishes after the breaker opened or went half-open does not count there.
 */
export function record(state: BreakerState, outcome: Outcome, nowMs: number, cfg: BreakerConfig, probe: boolean): BreakerState {
  if (outcome === 'ignored') {
    if (probe && state.kind === 'half-open') return { kind: 'half-open', probes: Math.max(0, state.probes - 1), successes: state.successes };
    return state;
  }
  switch (state.kind) {
    case 'open':
      return state;
    case 'half-open':
      if (!probe) return state;
      if (outcome === 'failure') return { kind: 'open', openedAt: nowMs, cause: { by: 'probe' } };
      if (state.successes + 1 >= cfg.halfOpenRequests) return closedState(nowMs);
      return { kind: 'half-open', probes: Math.max(0, state.probes - 1), successes: state.successes + 1 };
    case 'closed':
      return recordClosed(state, outcome === 'failure', nowMs, cfg);
  }
}

type Closed = Extract<BreakerState, { kind: 'closed' }>;

function recordClosed(s: Closed, failed: boolean, nowMs: number, cfg: BreakerConfig): BreakerState {
  // roll the window forward: the current bucket becomes the previous one, or both empty out
  let { bucketAt, total, failures, prevTotal, prevFailures } = s;
  const elapsed = nowMs - bucketAt;
  if (elapsed >= cfg.windowMs) {
    const buckets = Math.floor(elapsed / cfg.windowMs);
    if (buckets === 1) {
      prevTotal = total;
      prevFailures = failures;
    } else {
      prevTotal = 0;
      prevFailures = 0;
    }
    bucketAt += buckets * cfg.windowMs;
    total = 0;
    failures = 0;
  }
  total++;
  if (failed) failures++;
  const consecutive = failed ? s.consecutive + 1 : 0;

  if (failed) {
    if (cfg.consecutiveFailures !== undefined && consecutive >= cfg.consecutiveFailures) {
      return { kind: 'open', openedAt: nowMs, cause: { by: 'consecutive', failures: consecutive } };
    }
    if (cfg.failureRatio !== undefined) {
      const weight = 1 - (nowMs - bucketAt) / cfg.windowMs;
      const seen = total + prevTotal * weight;
      const failed = failures + prevFailures * weight;
      if (seen >= cfg.minRequests && failed / seen >= cfg.failureRatio) {
        return { kind: 'open', openedAt: nowMs, cause: { by: 'ratio', failures: Math.round(failed), total: Math.round(seen) } };
      }
    }
  } else if (s.consecutive === 0 && cfg.failureRatio === undefined) {
    return s; // nothing to count: the common case costs no allocation
  }
  return { kind: 'closed', consecutive, bucketAt, total, failures, prevTotal, prevFailures };
}

/** The `/admin/upstreams` view: an open breaker whose `openFor` passed is half-open already. */
export function viewOf(state: BreakerState, nowMs: number, cfg: BreakerConfig): { state: BreakerStateName; retryInMs: number } {
  if (state.kind !== 'open') return { state: state.kind, retryInMs: 0 };
  const retryInMs = state.openedAt + cfg.openForMs - nowMs;
  return retryInMs > 0 ? { state: 'open', retryInMs: Math.ceil(retryInMs) } : { state: 'half-open', retryInMs: 0 };
}

// ---------------------------------------------------------------- the runtime around it

/** Told about every state change; telemetry turns it into a span event, a log line and a gauge. */
export interface BreakerObserver {
  breakerTransition(upstream: string, from: BreakerStateName, to: BreakerStateName, ex: Exchange | undefined, detail: string): void;
}

export interface Breaker {
  /** 'closed' or 'probe': go ahead (pass it back to `record`); a GatehouseError: answer with it. */
  admit(ex: Exchange | undefined): 'closed' | 'probe' | GatehouseError;
  record(outcome: Outcome, admitted: 'closed' | 'probe', ex: Exchange | undefined): void;
  view(): { state: BreakerStateName; retryInMs: number };
}

export function createBreaker(upstream: string, cfg: BreakerConfig, clock: Clock, observer: BreakerObserver): Breaker {
  let state = closedState(clock.monotonic());

  const change = (next: BreakerState, ex: Exchange | undefined) => {
    const from = state.kind;
    state = next;
    if (from !== next.kind) observer.breakerTransition(upstream, from, next.kind, ex, describe(upstream, next));
  };

  return {
    admit(ex) {
      if (state.kind === 'closed') return 'closed'; // the hot path: no clock read, no allocation
      const a = admit(state, clock.monotonic(), cfg);
      if (a.state !== state) change(a.state, ex);
      if (a.admitted) return a.probe ? 'probe' : 'closed';
      const seconds = Math.max(1, Math.ceil(a.retryInMs / 1000));
      return new GatehouseError('circuit_open', `${describe(upstream, state)}; retrying in ${seconds}s`, { 'retry-after': String(seconds) });
    },
    record(outcome, admitted, ex) {
      const next = record(state, outcome, clock.monotonic(), cfg, admitted === 'probe');
      if (next !== state) change(next, ex);
    },
    view: () => viewOf(state, clock.monotonic(), cfg),
  };
}

function describe(upstream: string, s: BreakerState): string {
  if (s.kind === 'half-open') return `upstream '${upstream}' is being probed after its circuit opened`;
  if (s.kind === 'closed') return `upstream '${upstream}' answers again`;
  switch (s.cause.by) {
    case 'consecutive':
      return `upstream '${upstream}' failed ${s.cause.failures} times in a row`;
    case 'ratio':
      return `upstream '${upstream}' failed ${s.cause.failures} of its last ${s.cause.total} requests`;
    case 'probe':
      return `upstream '${upstream}' failed a probe after its circuit opened`;
  }
}
