import { GatehouseError } from '../core/errors.js';
import type { Policy } from '../core/send.js';

/**
 * `maxConcurrent`: a cap on attempts in flight to one upstream, shared by every route to it
 * (what Envoy calls "circuit breaking" and Traefik InFlightReq). Over the cap the request is
 * refused at once with 503 `overloaded` instead of queueing behind a slow upstream.
 */
export interface Bulkhead {
  readonly max: number;
  active: number;
}

export const createBulkhead = (max: number): Bulkhead => ({ max, active: 0 });

export function bulkhead(b: Bulkhead, upstream: string): Policy {
  return (next) =>
    async function withBulkhead(ex) {
      if (b.active >= b.max) {
        throw new GatehouseError('overloaded', `upstream '${upstream}' already has ${b.max} requests in flight (maxConcurrent)`);
      }
      b.active++;
      try {
        return await next(ex);
      } finally {
        b.active--;
      }
    };
}
