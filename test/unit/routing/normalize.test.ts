import { describe, expect, it } from 'vitest';
import { normalizePath, removeDotSegments } from '../../../src/routing/normalize.js';

describe('normalizePath', () => {
  it.each([
    ['/api/orders', '/api/orders'],
    ['/api/../admin', '/admin'],
    ['/api/./orders', '/api/orders'],
    ['/api/%2e%2e/admin', '/admin'],
    ['/api/%2E%2E/admin', '/admin'],
    ['/api/.%2e/admin', '/admin'],
    ['/%61pi/x', '/api/x'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/a/b/..', '/a/'],
    ['/files/a%2Fb', '/files/a%2Fb'], // an encoded slash is data: kept, never a separator
    ['/files/a%2fb', '/files/a%2Fb'],
    ['/files/a%5cb', '/files/a%5Cb'],
    ['/q/%20x', '/q/%20x'],
    ['//evil.example/admin', '/evil.example/admin'], // a WHATWG parser would read a host there
    ['///admin', '/admin'],
    ['/a//b', '/a//b'],
  ])('normalises %s to %s', (input, output) => {
    expect(normalizePath(input)).toBe(output);
  });

  it.each([
    ['/api/..%2Fadmin'],
    ['/api/%2e%2e%2fadmin'],
    ['/api%2F..%2Fadmin'],
    ['/api/..%5Cadmin'],
    ['/api/..\\admin'],
    ['/api\\..\\admin'],
    ['/api/%zz'],
    ['api/x'],
  ])('refuses %s, whose dot segments only appear when encoded slashes or backslashes separate', (input) => {
    expect(normalizePath(input)).toBeUndefined();
  });
});

describe('path normalisation edges', () => {
  it('leaves a plain path untouched and resolves trailing dot segments to a directory', () => {
    expect(normalizePath('/')).toBe('/');
    expect(normalizePath('/a/b/.')).toBe('/a/b/');
    expect(normalizePath('/api/..')).toBe('/');
    expect(removeDotSegments('/a/./b/../../c')).toBe('/c');
  });

  it('decodes every unreserved character, not only dots', () => {
    expect(normalizePath('/%7Euser/%5F%2D')).toBe('/~user/_-');
    expect(normalizePath('/q%3fx')).toBe('/q%3Fx');
  });

  it('refuses truncated escapes and targets that are not a path', () => {
    expect(normalizePath('/a%2')).toBeUndefined();
    expect(normalizePath('/a%')).toBeUndefined();
    expect(normalizePath('*')).toBeUndefined();
  });

  it.each([['/account#'], ['/account#x'], ['/account\\'], ['/a%00b'], ['/a%0d%0aSet-Cookie:x'], ['/a%0Ab'], ['/a%7f'], ['/a%09b']])(
    'refuses %s: a fragment, a backslash or an escaped control character (SPEC §3.1)',
    (input) => {
      expect(normalizePath(input)).toBeUndefined();
    },
  );

  it('escapes what a WHATWG parser escapes, so the forwarded path reads back unchanged', () => {
    expect(normalizePath('/a"b<c>`{d}')).toBe('/a%22b%3Cc%3E%60%7Bd%7D');
    for (const p of ['/a"b', '/x/%2e%2E/y', '/%7b', '/a;b', '/a//b', '/~x']) {
      const n = normalizePath(p)!;
      expect(new URL(n, 'http://h').pathname).toBe(n);
    }
  });
});
