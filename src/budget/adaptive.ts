/**
 * How many requests may be in flight to an upstream (SPEC §12 `concurrency`). A fixed number, or
 * a limit that adapts the way Netflix's concurrency-limits `AIMDLimit` and TCP do: additive
 * increase (about one more per round trip) while answers succeed and latency stays near its
 * recent minimum, multiplicative decrease on 429/503/timeouts or a latency rise — at most once per
 * round trip, since the answers of requests sent before a cut say nothing about the new limit.
 *
 * One addition for providers that say which limiter fired (Stripe's
 * `Stripe-Rate-Limited-Reason: endpoint-concurrency`): such a 429 names the ceiling — the request
 * went out with `n` in flight and `n` was too many — so the limit drops to below it and that level
 * is remembered as the known-safe one. Above it the limit only probes, one step, after
 * `probeAfter` successes; each failed probe doubles that wait (a failed probe costs one 429), each
 * probe that holds halves it. A steady ceiling thus costs fewer and fewer 429s, where plain AIMD's
 * sawtooth would hit it every few round trips.
 */
export interface ConcurrencyLimit {
  readonly adaptive: boolean;
  /** Requests in flight now. */
  readonly inflight: number;
  /** The limit now (whole requests). */
  readonly limit: number;
  /** Takes a slot when one is free. */
  tryAcquire(): boolean;
  release(): void;
  /**
   * One answer: `rttMs` from admission to answer; `inflightAtStart` the requests in flight when it
   * was admitted, itself included; `startedAt`/`now` ms on one clock.
   */
  sample(kind: SampleKind, startedAt: number, rttMs: number, inflightAtStart: number, now: number): void;
}

/** What an answer says: fine; overload (429, 503, a timeout); or the provider's concurrency limiter fired. */
export type SampleKind = 'ok' | 'overload' | 'concurrency';

export function fixedLimit(limit: number): ConcurrencyLimit {
  let inflight = 0;
  return {
    adaptive: false,
    get inflight() {
      return inflight;
    },
    limit,
    tryAcquire() {
      if (inflight >= limit) return false;
      inflight++;
      return true;
    },
    release() {
      if (inflight > 0) inflight--;
    },
    sample() {},
  };
}

const BACKOFF = 0.9;
/** Successes at the known-safe level before the first probe above it. */
const PROBE_BASE = 50;
const PROBE_MAX = 5_000;
/** A latency rise counts when the smoothed round trip is this many times the minimum ... */
const LATENCY_RATIO = 2;
/** ... and at least this much above it (loopback jitter is no congestion). */
const LATENCY_SLACK_MS = 50;
/** The minimum is re-measured after this many samples, so it follows a provider that got slower for good. */
const MIN_RTT_SAMPLES = 1_000;

export interface AdaptiveOptions {
  readonly min: number;
  readonly max: number;
  readonly initial: number;
}

export class AdaptiveLimit implements ConcurrencyLimit {
  readonly adaptive = true;
  inflight = 0;
  private value: number;
  /** The highest level known to hold; Infinity until a concurrency 429 says where the ceiling is. */
  private safe = Infinity;
  private probeAfter = PROBE_BASE;
  private atLevel = 0;
  private decreasedAt = -Infinity;
  private minRtt = Infinity;
  private smoothed = 0;
  private samples = 0;

  constructor(private readonly options: AdaptiveOptions) {
    this.value = options.initial;
  }

  get limit(): number {
    return Math.floor(this.value);
  }

  tryAcquire(): boolean {
    if (this.inflight >= Math.floor(this.value)) return false;
    this.inflight++;
    return true;
  }

  release(): void {
    if (this.inflight > 0) this.inflight--;
  }

  sample(kind: SampleKind, startedAt: number, rttMs: number, inflightAtStart: number, now: number): void {
    const { min, max } = this.options;
    let rising = false;
    if (kind === 'ok') {
      this.smoothed = this.smoothed === 0 ? rttMs : this.smoothed * 0.9 + rttMs * 0.1;
      if (rttMs < this.minRtt) this.minRtt = rttMs;
      if (++this.samples >= MIN_RTT_SAMPLES) {
        this.samples = 0;
        this.minRtt = this.smoothed;
      }
      rising = this.smoothed > LATENCY_RATIO * this.minRtt && this.smoothed - this.minRtt > LATENCY_SLACK_MS;
    }
    if (kind !== 'ok' || rising) {
      if (startedAt < this.decreasedAt) return; // sent before the last cut: it says nothing about the new limit
      this.decreasedAt = now;
      const level = Math.floor(this.value);
      if (kind === 'concurrency') {
        // a failed probe above the known-safe level: probe half as often; else the ceiling is new
        this.probeAfter = level > this.safe ? Math.min(PROBE_MAX, this.probeAfter * 2) : PROBE_BASE;
        this.value = Math.max(min, Math.min(level - 1, inflightAtStart - 1));
        this.safe = Math.floor(this.value);
      } else {
        this.value = Math.max(min, this.value * BACKOFF);
      }
      if (rising) this.smoothed = this.minRtt; // judge the new limit by its own round trips
      this.atLevel = 0;
      return;
    }
    if (inflightAtStart * 2 < this.value) return; // the limit is not what holds requests back: no evidence
    const level = Math.floor(this.value);
    if (level < this.safe) {
      this.value = Math.min(max, this.value + 1 / this.value, this.safe === Infinity ? max : this.safe);
      return;
    }
    if (++this.atLevel < this.probeAfter) return;
    this.atLevel = 0;
    if (level > this.safe) {
      // the probe held: the ceiling moved up
      this.safe = level;
      this.probeAfter = Math.max(PROBE_BASE, this.probeAfter / 2);
    } else {
      this.value = Math.min(max, level + 1);
    }
  }
}
