import type { Clock } from '../core/clock.js';
import type { Exchange } from '../core/exchange.js';
import type { Outcome } from '../core/outcome.js';
import { ejectionTimeMs, mayEject, type EjectionRules, type HealthObserver } from './health.js';

/** What passive ejection reads and writes on an endpoint. */
export interface Ejectable {
  readonly url: string;
  /** Taken out of rotation for failing in live traffic. */
  ejected: boolean;
  /** Failures in live traffic in a row. */
  failures: number;
  /** Ejections in a row: each one lasts twice as long as the one before. */
  ejections: number;
  /** Monotonic time it last rejoined the rotation after an ejection. */
  restoredAt: number;
}

export interface Ejection<E extends Ejectable> {
  /** What one attempt said about its endpoint (every attempt, proxied or a delivery). */
  report(this: void, ep: E, outcome: Outcome, ex: Exchange | undefined): void;
  /** Stops the timers that would bring ejected endpoints back. */
  close(): void;
}

export interface EjectionDeps {
  readonly clock: Clock;
  readonly observer: HealthObserver;
  /** How many endpoints are in rotation now (healthy and not ejected). */
  readonly inRotation: () => number;
  /** An endpoint left or rejoined the rotation: rebuild it. */
  readonly changed: () => void;
}

const noEjection: Ejection<Ejectable> = { report() {}, close() {} };

/**
 * Passive ejection, Envoy's outlier detection: an endpoint that fails `consecutiveFailures` times
 * in a row in live traffic leaves the rotation for `baseTime`, doubling on each repeat up to
 * `maxTime`; at most `maxPercent` of the endpoints at once, never the last one in rotation.
 * `rules` undefined (ejection off, or a single endpoint) reports into nothing.
 */
export function createEjection<E extends Ejectable>(upstream: string, endpoints: readonly E[], rules: EjectionRules | undefined, deps: EjectionDeps): Ejection<E> {
  if (rules === undefined) return noEjection;
  const { clock, observer } = deps;
  const timers = new Set<NodeJS.Timeout>();

  const restore = (ep: E) => {
    ep.ejected = false;
    ep.failures = 0;
    ep.restoredAt = clock.monotonic();
    deps.changed();
    observer.endpointChange(upstream, ep.url, 'restored', undefined, `endpoint ${ep.url} of upstream '${upstream}' is back in rotation`);
  };

  const eject = (ep: E, ex: Exchange | undefined) => {
    const now = clock.monotonic();
    if (now - ep.restoredAt > rules.maxTimeMs) ep.ejections = 0; // long enough in rotation: start over at baseTime
    const forMs = ejectionTimeMs(ep.ejections, rules);
    ep.ejections++;
    ep.ejected = true;
    deps.changed();
    const timer = setTimeout(() => {
      timers.delete(timer);
      restore(ep);
    }, forMs);
    timer.unref();
    timers.add(timer);
    observer.endpointChange(upstream, ep.url, 'ejected', ex, `endpoint ${ep.url} of upstream '${upstream}' failed ${ep.failures} times in a row; out of rotation for ${forMs}ms`);
  };

  return {
    report(ep, outcome, ex) {
      if (outcome === 'success') {
        ep.failures = 0;
        return;
      }
      if (outcome === 'ignored' || ep.ejected) return;
      if (++ep.failures < rules.consecutiveFailures) return;
      const ejected = endpoints.reduce((n, e) => (e.ejected ? n + 1 : n), 0);
      if (mayEject(endpoints.length, ejected, deps.inRotation(), rules)) eject(ep, ex);
    },
    close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
    },
  };
}
