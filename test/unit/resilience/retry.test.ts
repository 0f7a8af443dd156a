import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../../src/config/schema.js';
import { compileRetry, decideRetry, retryHintMs, type RetryInput } from '../../../src/resilience/retry.js';

function plan(retry: Record<string, unknown>) {
  const config = ConfigSchema.parse({
    version: 1,
    listeners: [{ name: 'in', address: '127.0.0.1:0' }],
    upstreams: { app: { endpoints: ['http://127.0.0.1:1'] } },
    routes: [{ name: 'r', listener: 'in', upstream: 'app', retry }],
  });
  return compileRetry(config.routes[0]!.retry!);
}

const base: RetryInput = { cause: 503, attempt: 1, hintMs: undefined, nowMs: 1_000, deadlineAt: 31_000, retriesInFlight: 0, requestsInFlight: 10 };
const half = () => 0.5;

describe('retry decision (pure)', () => {
  it('retries a listed status with a jittered back-off', () => {
    const p = plan({ attempts: 3, on: [503], backoff: { base: '100ms', max: '2s' } });
    expect(decideRetry(p, base, half)).toEqual({ retry: true, delayMs: 50 });
    expect(decideRetry(p, { ...base, attempt: 2 }, half)).toEqual({ retry: true, delayMs: 100 });
  });

  it('does not retry a status or failure that `on` does not list', () => {
    const p = plan({ on: [503, 'connect-failure'] });
    expect(decideRetry(p, { ...base, cause: 500 }, half)).toEqual({ retry: false, reason: 'condition' });
    expect(decideRetry(p, { ...base, cause: 'reset' }, half)).toEqual({ retry: false, reason: 'condition' });
    expect(decideRetry(p, { ...base, cause: 'connect-failure' }, half).retry).toBe(true);
  });

  it('understands status classes such as 5xx', () => {
    const p = plan({ on: ['5xx'] });
    for (const cause of [500, 502, 599]) expect(decideRetry(p, { ...base, cause }, half).retry).toBe(true);
    for (const cause of [429, 404, 200]) expect(decideRetry(p, { ...base, cause }, half).retry).toBe(false);
  });

  it('stops when the attempts are used up', () => {
    const p = plan({ attempts: 3, on: [503] });
    expect(decideRetry(p, { ...base, attempt: 3 }, half)).toEqual({ retry: false, reason: 'attempts' });
  });

  it('stops when the retry budget is spent', () => {
    const p = plan({ on: [503], budget: 0.2 });
    expect(decideRetry(p, { ...base, retriesInFlight: 20, requestsInFlight: 100 }, half)).toEqual({ retry: false, reason: 'budget' });
    expect(decideRetry(p, { ...base, retriesInFlight: 19, requestsInFlight: 100 }, half).retry).toBe(true);
  });

  it("waits what the upstream asked for, and passes the answer on when that does not fit the deadline", () => {
    const p = plan({ on: [429] });
    expect(decideRetry(p, { ...base, cause: 429, hintMs: 1_000 }, half)).toEqual({ retry: true, delayMs: 1_000 });
    expect(decideRetry(p, { ...base, cause: 429, hintMs: 30_000 }, half)).toEqual({ retry: false, reason: 'deadline' });
  });

  it('does not start a back-off that would end after the deadline', () => {
    const p = plan({ on: [503], backoff: { base: '1s', max: '1s' } });
    expect(decideRetry(p, { ...base, deadlineAt: 1_400 }, half)).toEqual({ retry: false, reason: 'deadline' });
    expect(decideRetry(p, { ...base, deadlineAt: 1_600 }, half)).toEqual({ retry: true, delayMs: 500 });
  });

  it('has the defaults of the SPEC: 3 attempts on connect failures, resets, timeouts, 502, 503, 504', () => {
    const p = plan({});
    expect(p.attempts).toBe(3);
    expect([...p.failures].sort()).toEqual(['connect-failure', 'reset', 'timeout']);
    expect([500, 502, 503, 504, 429].map((s) => p.statuses[s])).toEqual([0, 1, 1, 1, 0]);
    expect(p.maxBodyBytes).toBe(64 * 1024);
    expect(p.budget).toBe(0.2);
    expect(p.respectRetryAfter).toBe(true);
  });
});

describe('Retry-After and rate-limit hints', () => {
  const now = Date.UTC(2025, 0, 1, 12, 0, 0);
  const hdr = (...kv: string[]) => kv.map((s) => Buffer.from(s));

  it('reads Retry-After in seconds', () => {
    expect(retryHintMs(hdr('Retry-After', '2'), now)).toBe(2_000);
  });

  it('reads Retry-After as an HTTP-date', () => {
    expect(retryHintMs(hdr('retry-after', 'Wed, 01 Jan 2025 12:00:03 GMT'), now)).toBe(3_000);
    expect(retryHintMs(hdr('retry-after', 'Wed, 01 Jan 2025 11:59:00 GMT'), now)).toBe(0);
  });

  it('reads the IETF RateLimit field: the longest reset of a spent quota', () => {
    expect(retryHintMs(hdr('RateLimit', '"burst";r=0;t=4, "day";r=100;t=3600'), now)).toBe(4_000);
    expect(retryHintMs(hdr('RateLimit', '"burst";r=3;t=4'), now)).toBeUndefined();
  });

  it('reads X-RateLimit-Reset as seconds or as a Unix time, when nothing remains', () => {
    expect(retryHintMs(hdr('X-RateLimit-Remaining', '0', 'X-RateLimit-Reset', '5'), now)).toBe(5_000);
    expect(retryHintMs(hdr('X-RateLimit-Remaining', '0', 'X-RateLimit-Reset', String(now / 1000 + 7)), now)).toBe(7_000);
    expect(retryHintMs(hdr('X-RateLimit-Remaining', '12', 'X-RateLimit-Reset', '5'), now)).toBeUndefined();
  });

  it('prefers Retry-After, and ignores what it cannot parse', () => {
    expect(retryHintMs(hdr('X-RateLimit-Reset', '9', 'Retry-After', '1'), now)).toBe(1_000);
    expect(retryHintMs(hdr('Retry-After', 'soon'), now)).toBeUndefined();
    expect(retryHintMs([], now)).toBeUndefined();
  });
});
