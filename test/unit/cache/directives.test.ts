import { describe, expect, it } from 'vitest';
import { isEtagUsable, parseDirectives, parseHttpDate } from '../../../src/cache/directives.js';

// undici's parser is reached through an internal path (src/cache/directives.ts): these pin what
// gatehouse relies on, so an undici upgrade that moves or changes it fails here.
describe('Cache-Control directives (undici lib/util/cache.js)', () => {
  it('reads the directives a shared cache acts on, values as numbers', () => {
    expect(parseDirectives('public, max-age=60, s-maxage="30", stale-while-revalidate=10, stale-if-error=3600')).toEqual({
      public: true,
      'max-age': 60,
      's-maxage': 30,
      'stale-while-revalidate': 10,
      'stale-if-error': 3600,
    });
    expect(parseDirectives('No-Store')).toEqual({ 'no-store': true });
    expect(parseDirectives('must-revalidate, proxy-revalidate, no-cache')).toMatchObject({ 'must-revalidate': true, 'proxy-revalidate': true, 'no-cache': true });
  });

  it('keeps qualified private/no-cache field lists, and a malformed no-store still counts', () => {
    expect(parseDirectives('private="set-cookie, x-user"').private).toEqual(['set-cookie', 'x-user']);
    expect(parseDirectives('no-cache="set-cookie"')['no-cache']).toEqual(['set-cookie']);
    expect(parseDirectives('no-store\u0000')['no-store']).toBe(true);
  });

  it('drops invalid numbers, and takes the smallest of repeated max-age', () => {
    expect(parseDirectives('max-age=abc')['max-age']).toBeUndefined();
    expect(parseDirectives('max-age=60, max-age=10')['max-age']).toBe(10);
    expect(parseDirectives(undefined)).toEqual({});
  });

  it('tells usable ETags from empty or malformed ones, and reads HTTP dates', () => {
    expect(isEtagUsable('"v1"')).toBe(true);
    expect(isEtagUsable('W/"v1"')).toBe(true);
    expect(isEtagUsable('""')).toBe(false);
    expect(isEtagUsable('v1')).toBe(false);
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')).toBe(784111777000);
    expect(parseHttpDate('not a date')).toBeUndefined();
  });
});
