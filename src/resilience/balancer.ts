/**
 * Load balancing over the endpoints currently in rotation. The caller keeps the list of
 * available endpoints (rebuilt only when health or ejection changes), so a pick is an index
 * step or two random draws: nothing is filtered or allocated per request.
 */

export interface Loaded {
  /** Requests in flight to this endpoint. */
  readonly inFlight: number;
}

export type Balancer<E> = (available: readonly E[]) => E | undefined;

/** Each endpoint in turn. */
export function roundRobin<E>(): Balancer<E> {
  let next = 0;
  return function pickRoundRobin(available) {
    const n = available.length;
    if (n === 0) return undefined;
    if (next >= n) next = 0;
    return available[next++];
  };
}

/**
 * Envoy's least-request: the less loaded of two endpoints drawn at random ("power of two
 * choices"), which spreads load almost as well as a full scan and avoids the herd that "always
 * the least loaded" causes across replicas.
 */
export function leastRequest<E extends Loaded>(rand: () => number): Balancer<E> {
  return function pickLeastRequest(available) {
    const n = available.length;
    if (n <= 1) return available[0];
    const i = Math.floor(rand() * n);
    let j = Math.floor(rand() * (n - 1));
    if (j >= i) j++;
    const a = available[i]!;
    const b = available[j]!;
    return b.inFlight < a.inFlight ? b : a;
  };
}
