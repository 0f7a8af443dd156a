import type { Clock } from '../resilience/clock.js';
import type { Exchange } from '../proxy/exchange.js';
import type { AttemptResult, Policy } from '../proxy/send.js';

/**
 * Limits a provider announces in its answers, and the per-upstream pause they cause: after a
 * `429` with `Retry-After`, or a `RateLimit` / `X-RateLimit-Remaining: 0` with a reset time,
 * new requests to that upstream wait (or get 429) until the reset instead of hammering a
 * throttled API. The parsers are exported for any policy that reads these headers (retry waits).
 */

/** Longest pause an announcement can cause, so a bogus header cannot stop an upstream for days. */
export const MAX_PAUSE_MS = 3_600_000;

/**
 * `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as milliseconds from `nowMs`
 * (wall clock). undefined when absent or unreadable; 0 for a date in the past.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/^[A-Za-z]/.test(text)) return undefined; // an HTTP-date: "Wed, 21 Oct 2015 07:28:00 GMT" (or the obsolete forms)
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * A reset given as seconds: a delta (`RateLimit-Reset: 30`, the IETF drafts) or, as GitHub and
 * others send in `X-RateLimit-Reset`, a Unix time in seconds (or milliseconds). Values larger
 * than a billion cannot be a sensible delta, so they are read as a point in time.
 */
export function parseResetSeconds(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value.trim());
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) return undefined;
  if (n >= 1e12) return Math.max(0, n - nowMs); // Unix ms
  if (n >= 1e9) return Math.max(0, n * 1000 - nowMs); // Unix seconds
  return n * 1000;
}

/**
 * The IETF `RateLimit` field, both shapes providers send:
 * draft-ietf-httpapi-ratelimit-headers-08+: `"default";r=0;t=30` (a list; any member counts),
 * earlier drafts: `limit=100, remaining=0, reset=30`.
 * Returns ms until the quota resets when some member has no units left, else undefined.
 */
export function parseRateLimitField(value: string, nowMs: number): number | undefined {
  let pause: number | undefined;
  if (/(^|[\s,;])remaining\s*=/.test(value)) {
    const remaining = /(?:^|[\s,;])remaining\s*=\s*(\d+)/.exec(value)?.[1];
    const reset = /(?:^|[\s,;])reset\s*=\s*(\d+)/.exec(value)?.[1];
    if (remaining === '0') pause = parseResetSeconds(reset, nowMs);
    return pause;
  }
  for (const member of value.split(',')) {
    const r = /;\s*r\s*=\s*(\d+)/.exec(member)?.[1];
    const t = /;\s*t\s*=\s*(\d+)/.exec(member)?.[1];
    if (r !== '0' || t === undefined) continue;
    const ms = Number(t) * 1000;
    if (pause === undefined || ms > pause) pause = ms;
  }
  return pause;
}

/** The rate-limit headers of one answer, as sent (undefined when absent). */
export interface LimitHeaders {
  retryAfter: string | undefined;
  /** `RateLimit` */
  rateLimit: string | undefined;
  /** `RateLimit-Remaining` / `RateLimit-Reset` (IETF drafts 03-07) */
  remaining: string | undefined;
  reset: string | undefined;
  /** `X-RateLimit-Remaining` / `X-RateLimit-Reset` (GitHub, and many more) */
  xRemaining: string | undefined;
  xReset: string | undefined;
}

/**
 * One pass over a raw header list ([name, value, ...], undici's Buffers or strings) for the
 * headers that announce limits; the first of each counts. Names are filtered by their first
 * character and length before any decoding: all of them start with r or x and are 9-21 long.
 */
export function scanLimitHeaders(raw: readonly (Buffer | string)[]): LimitHeaders {
  const h: LimitHeaders = { retryAfter: undefined, rateLimit: undefined, remaining: undefined, reset: undefined, xRemaining: undefined, xReset: undefined };
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const first = (typeof name === 'string' ? name.charCodeAt(0) : name[0]!) | 0x20;
    if ((first !== 0x72 && first !== 0x78) || name.length < 9 || name.length > 21) continue;
    const value = () => raw[i + 1]!.toString('latin1').trim();
    switch ((typeof name === 'string' ? name : name.toString('latin1')).toLowerCase()) {
      case 'retry-after':
        h.retryAfter ??= value();
        break;
      case 'ratelimit':
        h.rateLimit ??= value();
        break;
      case 'ratelimit-remaining':
        h.remaining ??= value();
        break;
      case 'ratelimit-reset':
        h.reset ??= value();
        break;
      case 'x-ratelimit-remaining':
        h.xRemaining ??= value();
        break;
      case 'x-ratelimit-reset':
        h.xReset ??= value();
        break;
    }
  }
  return h;
}

export interface Announcement {
  readonly pauseMs: number;
  /** Which header said so, for logs and /admin/quotas. */
  readonly source: string;
}

/**
 * What an upstream answer announces: how long to leave the upstream alone, or undefined.
 * Reads `Retry-After` on a 429; `RateLimit`; `RateLimit-Remaining: 0` + `RateLimit-Reset`;
 * `X-RateLimit-Remaining: 0` + `X-RateLimit-Reset`. The longest announced pause wins, capped at
 * MAX_PAUSE_MS.
 */
export function readAnnouncement(statusCode: number, rawHeaders: readonly (Buffer | string)[], nowMs: number): Announcement | undefined {
  const h = scanLimitHeaders(rawHeaders);
  let best: Announcement | undefined;
  const consider = (ms: number | undefined, source: string) => {
    if (ms !== undefined && ms > 0 && (best === undefined || ms > best.pauseMs)) best = { pauseMs: Math.min(ms, MAX_PAUSE_MS), source };
  };
  if (statusCode === 429) consider(parseRetryAfter(h.retryAfter, nowMs), '429 Retry-After');
  if (h.rateLimit !== undefined) consider(parseRateLimitField(h.rateLimit, nowMs), 'RateLimit');
  if (h.remaining === '0') consider(parseResetSeconds(h.reset, nowMs), 'RateLimit-Remaining: 0');
  if (h.xRemaining === '0') consider(parseResetSeconds(h.xReset, nowMs), 'X-RateLimit-Remaining: 0');
  return best;
}

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
