import { UpstreamError } from './errors.js';

/**
 * What one attempt says about an upstream's health, for the circuit breaker and for passive
 * ejection alike. Failures are connect errors, resets, timeouts, invalid responses and 5xx; a 4xx
 * (429 included: a throttling API is not a dead one) is a success. A client that went away, and
 * gatehouse's own refusals (bulkhead, no healthy endpoint), say nothing about the upstream.
 */
export type Outcome = 'success' | 'failure' | 'ignored';

export const statusOutcome = (statusCode: number): Outcome => (statusCode >= 500 ? 'failure' : 'success');

export function errorOutcome(err: unknown): Outcome {
  if (err instanceof UpstreamError) return err.kind === 'aborted' ? 'ignored' : 'failure';
  return 'ignored';
}
