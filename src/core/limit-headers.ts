/**
 * The rate-limit headers providers send, read the same way by every policy that cares: retry
 * waits (`Retry-After`), the pause a provider's announced limit causes (quota), provider budgets.
 */

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

/** Longest pause an announcement can cause, so a bogus header cannot stop an upstream for days. */
export const MAX_PAUSE_MS = 3_600_000;

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
