/**
 * Span times: milliseconds from performance.timeOrigin (performance.now()), as the spans record
 * them, and the same as nanoseconds since the epoch, exactly, for OTLP.
 */

/** Nanoseconds since the epoch of performance.timeOrigin, as two 32-bit halves (exact). */
const ORIGIN_MS = Math.floor(performance.timeOrigin);
const ORIGIN_FRACTION_MS = performance.timeOrigin - ORIGIN_MS;
const ORIGIN_NS = BigInt(ORIGIN_MS) * 1_000_000n;
export const ORIGIN_NS_LOW = Number(ORIGIN_NS & 0xffffffffn);
export const ORIGIN_NS_HIGH = Number(ORIGIN_NS >> 32n);

/** Nanoseconds from timeOrigin of a time in milliseconds from timeOrigin (performance.now()). */
export const nanosFromOrigin = (ms: number): number => Math.round((ORIGIN_FRACTION_MS + ms) * 1e6);
/** The same as nanoseconds since the epoch, for the SDK's HrTime. */
export const epochNanos = (ms: number): bigint => ORIGIN_NS + BigInt(nanosFromOrigin(ms));

