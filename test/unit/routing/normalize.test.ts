import { describe, expect, it } from 'vitest';
import { normalizePath, removeDotSegments } from '../../../src/routing/normalize.js';

describe('path normalisation', () => {
  it('leaves a plain path untouched', () => {
    expect(normalizePath('/api/orders/7')).toBe('/api/orders/7');
    expect(normalizePath('/')).toBe('/');
  });

  it('removes dot segments, never climbing above the root', () => {
    expect(normalizePath('/api/../admin')).toBe('/admin');
    expect(normalizePath('/api/./orders')).toBe('/api/orders');
    expect(normalizePath('/a/b/..')).toBe('/a/');
    expect(normalizePath('/a/b/.')).toBe('/a/b/');
    expect(normalizePath('/../../etc/passwd')).toBe('/etc/passwd');
    expect(normalizePath('/api/..')).toBe('/');
    expect(removeDotSegments('/a/./b/../../c')).toBe('/c');
  });

  it('decodes percent-encoded unreserved characters before removing dot segments', () => {
    expect(normalizePath('/%61dmin')).toBe('/admin');
    expect(normalizePath('/api/%2e%2e/admin')).toBe('/admin');
    expect(normalizePath('/api/%2E%2E/admin')).toBe('/admin');
    expect(normalizePath('/api/.%2e/admin')).toBe('/admin');
    expect(normalizePath('/%7Euser/%5F%2D')).toBe('/~user/_-');
  });

  it('keeps reserved characters encoded, upper-casing the escape, so %2F never becomes a separator', () => {
    expect(normalizePath('/api%2f..%2fadmin')).toBe('/api%2F..%2Fadmin');
    expect(normalizePath('/a%20b')).toBe('/a%20b');
    expect(normalizePath('/q%3fx')).toBe('/q%3Fx');
  });

  it('refuses invalid escapes and paths that do not start with /', () => {
    expect(normalizePath('/a%zz')).toBeUndefined();
    expect(normalizePath('/a%2')).toBeUndefined();
    expect(normalizePath('/a%')).toBeUndefined();
    expect(normalizePath('api')).toBeUndefined();
    expect(normalizePath('*')).toBeUndefined();
  });
});
