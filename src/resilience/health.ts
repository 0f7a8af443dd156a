import type { Exchange } from '../core/exchange.js';

/**
 * Endpoint health: active checks (a GET per endpoint every `interval`, Envoy's and Traefik's
 * thresholds) and passive ejection (Envoy's outlier detection: an endpoint failing in live
 * traffic leaves the rotation for a while). The rules are pure functions over plain numbers;
 * `createHealthChecker` owns the timers.
 */

export interface CheckThresholds {
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
}

export interface CheckState {
  readonly healthy: boolean;
  /** Results in a row that disagree with `healthy`. */
  readonly streak: number;
}

export const INITIAL_CHECK_STATE: CheckState = { healthy: true, streak: 0 };

/** unhealthyThreshold failures in a row take a healthy endpoint out; healthyThreshold passes bring it back. */
export function recordCheck(s: CheckState, passed: boolean, t: CheckThresholds): CheckState {
  if (passed === s.healthy) return s.streak === 0 ? s : { healthy: s.healthy, streak: 0 };
  const streak = s.streak + 1;
  if (streak >= (s.healthy ? t.unhealthyThreshold : t.healthyThreshold)) return { healthy: !s.healthy, streak: 0 };
  return { healthy: s.healthy, streak };
}

export interface EjectionRules {
  readonly consecutiveFailures: number;
  readonly baseTimeMs: number;
  readonly maxTimeMs: number;
  readonly maxPercent: number;
}

/**
 * May one more endpoint be ejected? At most `maxPercent` of them at once (rounded down), and
 * never the last one in rotation.
 */
export function mayEject(total: number, ejected: number, available: number, rules: EjectionRules): boolean {
  return available > 1 && ejected + 1 <= Math.floor((total * rules.maxPercent) / 100);
}

/** The n-th ejection in a row (0-based) lasts baseTime * 2^n, up to maxTime. */
export function ejectionTimeMs(n: number, rules: EjectionRules): number {
  return Math.min(rules.maxTimeMs, rules.baseTimeMs * 2 ** Math.min(n, 30));
}

export interface HealthCheckRules extends CheckThresholds {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/**
 * Runs `probe` for every target every `intervalMs` (the first right away), each bounded by
 * `timeoutMs`, and calls `onChange` when a target's health flips. Timers do not keep the process
 * alive; `stop()` cancels them and any probe in flight.
 */
export function createHealthChecker<T>(
  targets: readonly T[],
  rules: HealthCheckRules,
  probe: (target: T, signal: AbortSignal) => Promise<boolean>,
  onChange: (target: T, healthy: boolean) => void,
): { stop(): void } {
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const running = new Set<AbortController>();

  const schedule = (target: T, state: CheckState, delayMs: number) => {
    if (stopped) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      void check(target, state);
    }, delayMs);
    timer.unref();
    timers.add(timer);
  };

  async function check(target: T, state: CheckState): Promise<void> {
    const controller = new AbortController();
    running.add(controller);
    const timer = setTimeout(() => controller.abort(new Error(`health check timed out after ${rules.timeoutMs}ms`)), rules.timeoutMs);
    timer.unref();
    let passed: boolean;
    try {
      passed = await probe(target, controller.signal);
    } catch {
      passed = false;
    } finally {
      clearTimeout(timer);
      running.delete(controller);
    }
    if (stopped) return;
    const next = recordCheck(state, passed, rules);
    if (next.healthy !== state.healthy) onChange(target, next.healthy);
    schedule(target, next, rules.intervalMs);
  }

  for (const t of targets) schedule(t, INITIAL_CHECK_STATE, 0);

  return {
    stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const c of running) c.abort(new Error('health checks stopped'));
    },
  };
}

/** Told when an endpoint leaves or rejoins the rotation; telemetry logs it and adds span events. */
export interface HealthObserver {
  endpointChange(upstream: string, endpoint: string, change: EndpointChange, ex: Exchange | undefined, detail: string): void;
}

export type EndpointChange = 'unhealthy' | 'healthy' | 'ejected' | 'restored';
