import type { Exchange } from '../core/exchange.js';
import type { AuthObserver, AuthResult } from '../security/jwt.js';
import type { CounterCell, Metrics } from './metrics.js';

const RESULTS: readonly AuthResult[] = ['allowed', 'missing', 'invalid', 'expired', 'forbidden', 'unavailable'];

/**
 * JWT decisions as `gatehouse_auth_decisions_total{route,result}` and a `gatehouse.jwt` span
 * event with the result and reason (a fixed description, never the token).
 */
export function createAuthObserver(metrics: Metrics): AuthObserver {
  // The counter cells of a route, found on its first decision and kept: a decision is `value++`.
  const cells = new Map<string, Record<AuthResult, CounterCell>>();
  const forRoute = (route: string) => {
    let byResult = cells.get(route);
    if (byResult === undefined) {
      byResult = Object.fromEntries(RESULTS.map((result) => [result, metrics.authDecisions({ route, result })])) as Record<AuthResult, CounterCell>;
      cells.set(route, byResult);
    }
    return byResult;
  };
  return {
    decided(ex: Exchange, result: AuthResult, reason: string) {
      forRoute(ex.route?.name ?? '')[result].value++;
      if (ex.span !== undefined) ex.event('gatehouse.jwt', { 'gatehouse.auth.result': result, 'gatehouse.auth.reason': reason });
    },
  };
}
