/**
 * Exponential back-off with full jitter (AWS's "Exponential Backoff And Jitter"): the wait before
 * retry n is uniform in [0, min(max, base * 2^(n-1))). An immutable value, as in cockatiel:
 * `next()` returns the back-off for the following retry and leaves this one unchanged.
 */
export interface Backoff {
  /** The wait before this retry; 0 for the first attempt. */
  readonly delayMs: number;
  next(): Backoff;
}

/**
 * @example
 * const b = fullJitter(100, 2000, Math.random); // b.delayMs === 0: the first try does not wait
 * b.next().delayMs;                             // in [0, 100)
 * b.next().next().delayMs;                      // in [0, 200)
 */
export function fullJitter(baseMs: number, maxMs: number, rand: () => number, n = 0): Backoff {
  return {
    delayMs: backoffDelayMs(baseMs, maxMs, rand, n),
    next: () => fullJitter(baseMs, maxMs, rand, n + 1),
  };
}

/** The jittered wait before retry `n` (1 = the first retry) without building Backoff values. */
export function backoffDelayMs(baseMs: number, maxMs: number, rand: () => number, n: number): number {
  if (n <= 0) return 0;
  return Math.floor(rand() * backoffCeilingMs(baseMs, maxMs, n));
}

/** The exponential ceiling before retry `n` (n >= 1): min(max, base * 2^(n-1)). */
export function backoffCeilingMs(baseMs: number, maxMs: number, n: number): number {
  // 2 ** 31 is plenty; larger exponents only overflow towards Infinity before min() caps them
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(0, n - 1), 31));
}
