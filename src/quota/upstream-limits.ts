import type { Clock } from '../core/clock.js';
import { readAnnouncement } from '../core/limit-headers.js';
import type { Exchange } from '../core/exchange.js';
import type { AttemptResult, Policy } from '../core/send.js';

/**
 * Limits a provider announces in its answers, and the per-upstream pause they cause: after a
 * `429` with `Retry-After`, or a `RateLimit` / `X-RateLimit-Remaining: 0` with a reset time,
 * new requests to that upstream wait (or get 429) until the reset instead of hammering a
 * throttled API. The headers are read by core/limit-headers.ts.
 */

export { MAX_PAUSE_MS, readAnnouncement, type Announcement } from '../core/limit-headers.js';

/** One upstream's pause; the object stays the same across reloads, so routes hold it directly. */
export interface UpstreamPause {
  readonly upstream: string;
  /** clock.monotonic() until which new requests wait; 0 when not paused. */
  until: number;
  source: string;
}

export interface PauseObserver {
  upstreamPaused(upstream: string, pauseMs: number, source: string): void;
}

/**
 * Pauses per upstream name. Created once per process and handed from plan to plan, so a reload
 * does not forget that a provider asked to be left alone.
 */
export interface UpstreamLimits {
  pauseOf(upstream: string): UpstreamPause;
  /** Reads an answer's announcement and extends the upstream's pause (never shortens it). */
  observe(pause: UpstreamPause, statusCode: number, rawHeaders: readonly Buffer[]): void;
  view(): Record<string, { readonly pausedForMs: number; readonly source: string }>;
}

export function createUpstreamLimits(clock: Clock, observer: PauseObserver): UpstreamLimits {
  const pauses = new Map<string, UpstreamPause>();
  return {
    pauseOf(upstream) {
      let p = pauses.get(upstream);
      if (p === undefined) {
        p = { upstream, until: 0, source: '' };
        pauses.set(upstream, p);
      }
      return p;
    },
    observe(pause, statusCode, rawHeaders) {
      const said = readAnnouncement(statusCode, rawHeaders, clock.now());
      if (said === undefined) return;
      const until = clock.monotonic() + said.pauseMs;
      if (until <= pause.until) return;
      pause.until = until;
      pause.source = said.source;
      observer.upstreamPaused(pause.upstream, said.pauseMs, said.source);
    },
    view() {
      const now = clock.monotonic();
      const out: Record<string, { pausedForMs: number; source: string }> = {};
      for (const p of pauses.values()) if (p.until > now) out[p.upstream] = { pausedForMs: Math.ceil(p.until - now), source: p.source };
      return out;
    },
  };
}

/**
 * The innermost policy of a route that honours provider limits: sees every attempt's answer,
 * retried ones included, and records what it announces.
 */
export function observeUpstreamLimits(limits: UpstreamLimits, pause: UpstreamPause): Policy {
  return (next) =>
    async function observeLimits(ex: Exchange): Promise<AttemptResult> {
      const result = await next(ex);
      limits.observe(pause, result.statusCode, result.rawHeaders);
      return result;
    };
}
