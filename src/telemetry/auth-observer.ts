import type { Attributes } from '@opentelemetry/api';
import type { Exchange } from '../proxy/exchange.js';
import type { AuthObserver, AuthResult } from '../security/jwt.js';
import type { Metrics } from './metrics.js';

const RESULTS: readonly AuthResult[] = ['allowed', 'missing', 'invalid', 'expired', 'forbidden', 'unavailable'];

/**
 * JWT decisions as `gatehouse_auth_decisions_total{route,result}` and a `gatehouse.jwt` span
 * event with the result and reason (a fixed description, never the token).
 */
export function createAuthObserver(metrics: Metrics): AuthObserver {
  // One attribute object per route and result, built on first use and reused.
  const attributes = new Map<string, Record<AuthResult, Attributes>>();
  const forRoute = (route: string) => {
    let byResult = attributes.get(route);
    if (byResult === undefined) {
      byResult = Object.fromEntries(RESULTS.map((result) => [result, { route, result }])) as unknown as Record<AuthResult, Attributes>;
      attributes.set(route, byResult);
    }
    return byResult;
  };
  return {
    decided(ex: Exchange, result: AuthResult, reason: string) {
      metrics.authDecisions.add(1, forRoute(ex.route?.name ?? '')[result]);
      if (ex.span !== undefined) ex.event('gatehouse.jwt', { 'gatehouse.auth.result': result, 'gatehouse.auth.reason': reason });
    },
  };
}
