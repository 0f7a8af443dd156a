import { describe, expect, it } from 'vitest';
import { parseRateLimitField, parseResetSeconds, parseRetryAfter } from '../../../src/core/limit-headers.js';
import { createUpstreamLimits, MAX_PAUSE_MS, readAnnouncement } from '../../../src/quota/upstream-limits.js';

const NOW = Date.parse('2026-03-01T12:00:00Z');
const raw = (headers: Record<string, string>): Buffer[] => Object.entries(headers).flatMap(([k, v]) => [Buffer.from(k), Buffer.from(v)]);

describe('provider-announced limits', () => {
  it('reads Retry-After as delay-seconds or an HTTP-date', () => {
    expect(parseRetryAfter('120', NOW)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', NOW)).toBe(0);
    expect(parseRetryAfter('Sun, 01 Mar 2026 12:00:30 GMT', NOW)).toBe(30_000);
    expect(parseRetryAfter('Sunday, 01-Mar-26 12:00:30 GMT', NOW)).toBe(30_000);
    expect(parseRetryAfter('Sun, 01 Mar 2026 11:00:00 GMT', NOW)).toBe(0);
    expect(parseRetryAfter('-5', NOW)).toBeUndefined();
    expect(parseRetryAfter('1.5', NOW)).toBeUndefined();
    expect(parseRetryAfter('soon', NOW)).toBeUndefined();
    expect(parseRetryAfter(undefined, NOW)).toBeUndefined();
  });

  it('reads a reset as delta seconds, Unix seconds or Unix milliseconds', () => {
    expect(parseResetSeconds('30', NOW)).toBe(30_000);
    expect(parseResetSeconds(String(NOW / 1000 + 45), NOW)).toBe(45_000);
    expect(parseResetSeconds(String(NOW + 2_500), NOW)).toBe(2_500);
    expect(parseResetSeconds(String(NOW / 1000 - 10), NOW)).toBe(0);
    expect(parseResetSeconds('', NOW)).toBeUndefined();
    expect(parseResetSeconds('x', NOW)).toBeUndefined();
  });

  it('reads the IETF RateLimit field, structured (draft 08+) and in the older key=value shape', () => {
    expect(parseRateLimitField('"default";r=0;t=30', NOW)).toBe(30_000);
    expect(parseRateLimitField('"burst";r=5;t=1, "daily";r=0;t=3600', NOW)).toBe(3_600_000);
    expect(parseRateLimitField('"default";r=12;t=30', NOW)).toBeUndefined();
    expect(parseRateLimitField('limit=100, remaining=0, reset=20', NOW)).toBe(20_000);
    expect(parseRateLimitField('limit=100, remaining=3, reset=20', NOW)).toBeUndefined();
  });

  it('pauses on a 429 with Retry-After, on RateLimit r=0, and on (X-)RateLimit-Remaining: 0 with a reset', () => {
    expect(readAnnouncement(429, raw({ 'Retry-After': '7' }), NOW)).toEqual({ pauseMs: 7_000, source: '429 Retry-After' });
    expect(readAnnouncement(503, raw({ 'Retry-After': '7' }), NOW)).toBeUndefined(); // overload is the breaker's business
    expect(readAnnouncement(200, raw({ RateLimit: '"api";r=0;t=4' }), NOW)).toEqual({ pauseMs: 4_000, source: 'RateLimit' });
    expect(readAnnouncement(200, raw({ 'RateLimit-Remaining': '0', 'RateLimit-Reset': '9' }), NOW)).toEqual({ pauseMs: 9_000, source: 'RateLimit-Remaining: 0' });
    expect(readAnnouncement(200, raw({ 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(NOW / 1000 + 60) }), NOW)).toEqual({
      pauseMs: 60_000,
      source: 'X-RateLimit-Remaining: 0',
    });
    expect(readAnnouncement(200, raw({ 'X-RateLimit-Remaining': '3', 'X-RateLimit-Reset': '60' }), NOW)).toBeUndefined();
    expect(readAnnouncement(429, raw({ 'content-type': 'text/plain' }), NOW)).toBeUndefined(); // no time given: no pause
  });

  it('takes the longest of several announcements and caps it at an hour', () => {
    expect(readAnnouncement(429, raw({ 'retry-after': '2', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '10' }), NOW)).toEqual({
      pauseMs: 10_000,
      source: 'X-RateLimit-Remaining: 0',
    });
    expect(readAnnouncement(429, raw({ 'retry-after': '999999' }), NOW)!.pauseMs).toBe(MAX_PAUSE_MS);
  });

  it('extends a pause but never shortens it, and forgets it once it is over', () => {
    let mono = 1_000;
    const seen: string[] = [];
    const limits = createUpstreamLimits(
      { now: () => NOW, monotonic: () => mono, sleep: () => Promise.resolve() },
      { upstreamPaused: (u, ms, source) => seen.push(`${u} ${ms} ${source}`) },
    );
    const p = limits.pauseOf('stripe');
    expect(limits.pauseOf('stripe')).toBe(p);
    limits.observe(p, 429, raw({ 'retry-after': '10' }));
    expect(p.until).toBe(11_000);
    limits.observe(p, 429, raw({ 'retry-after': '2' }));
    expect(p.until).toBe(11_000);
    expect(limits.view()).toEqual({ stripe: { pausedForMs: 10_000, source: '429 Retry-After' } });
    mono = 11_000;
    expect(limits.view()).toEqual({});
    expect(seen).toEqual(['stripe 10000 429 Retry-After']);
  });
});
