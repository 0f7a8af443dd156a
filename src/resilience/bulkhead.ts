/**
 * `maxConcurrent`: a cap on attempts in flight to one upstream, shared by every route to it
 * (what Envoy calls "circuit breaking" and Traefik InFlightReq). Over the cap an attempt is
 * refused at once with 503 `overloaded` instead of queueing behind a slow upstream; the upstream
 * dispatch takes and frees the slots.
 */
export interface Bulkhead {
  readonly max: number;
  active: number;
}

export const createBulkhead = (max: number): Bulkhead => ({ max, active: 0 });
