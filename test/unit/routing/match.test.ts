import { describe, expect, it } from 'vitest';
import { compileMatch, httpRouteOf, type MatchInput } from '../../../src/routing/match.js';

const req = (path: string, more: Partial<MatchInput> = {}): MatchInput => ({ method: 'GET', host: 'shop.example.com', path, rawHeaders: [], ...more });

describe('route matching', () => {
  it('path matches the exact path only', () => {
    const m = compileMatch({ path: '/health' });
    expect(m(req('/health'))).toBe(true);
    expect(m(req('/health/'))).toBe(false);
    expect(m(req('/healthz'))).toBe(false);
  });

  it('pathPrefix matches whole segments: /api and /api/x but not /apix', () => {
    for (const prefix of ['/api', '/api/']) {
      const m = compileMatch({ pathPrefix: prefix });
      expect(m(req('/api')), prefix).toBe(true);
      expect(m(req('/api/')), prefix).toBe(true);
      expect(m(req('/api/orders/7')), prefix).toBe(true);
      expect(m(req('/apix')), prefix).toBe(false);
      expect(m(req('/ap')), prefix).toBe(false);
      expect(m(req('/v1/api')), prefix).toBe(false);
    }
    expect(compileMatch({ pathPrefix: '/' })(req('/anything'))).toBe(true);
  });

  it('pathRegex must match the whole path', () => {
    const m = compileMatch({ pathRegex: '/orders/[0-9]+' });
    expect(m(req('/orders/42'))).toBe(true);
    expect(m(req('/orders/42/items'))).toBe(false);
    expect(m(req('/v1/orders/42'))).toBe(false);
    expect(compileMatch({ pathRegex: '/a|/b' })(req('/b'))).toBe(true);
    expect(compileMatch({ pathRegex: '/a|/b' })(req('/bc'))).toBe(false);
  });

  it('methods restrict the match, and a GET route also takes HEAD', () => {
    const get = compileMatch({ methods: ['GET'] });
    expect(get(req('/', { method: 'GET' }))).toBe(true);
    expect(get(req('/', { method: 'HEAD' }))).toBe(true);
    expect(get(req('/', { method: 'POST' }))).toBe(false);
    const post = compileMatch({ methods: ['POST'] });
    expect(post(req('/', { method: 'HEAD' }))).toBe(false);
  });

  it('host matches exactly, and *.example.com matches exactly one more label', () => {
    const exact = compileMatch({ host: 'shop.example.com' });
    expect(exact(req('/'))).toBe(true);
    expect(exact(req('/', { host: 'api.example.com' }))).toBe(false);
    const wild = compileMatch({ host: '*.example.com' });
    expect(wild(req('/', { host: 'shop.example.com' }))).toBe(true);
    expect(wild(req('/', { host: 'a.b.example.com' }))).toBe(false);
    expect(wild(req('/', { host: 'example.com' }))).toBe(false);
    expect(wild(req('/', { host: '.example.com' }))).toBe(false);
    expect(wild(req('/', { host: 'shopexample.com' }))).toBe(false);
  });

  it('headers must all be present with exactly the given value, names in any case', () => {
    const m = compileMatch({ headers: { 'X-Tenant': 'acme', 'x-env': 'prod' } });
    expect(m(req('/', { rawHeaders: ['x-tenant', 'acme', 'X-ENV', 'prod'] }))).toBe(true);
    expect(m(req('/', { rawHeaders: ['x-tenant', 'acme'] }))).toBe(false);
    expect(m(req('/', { rawHeaders: ['x-tenant', 'ACME', 'x-env', 'prod'] }))).toBe(false);
    expect(m(req('/', { rawHeaders: ['x-tenant', 'other', 'x-tenant', 'acme', 'x-env', 'prod'] }))).toBe(true);
  });

  it('combines every condition', () => {
    const m = compileMatch({ pathPrefix: '/api', methods: ['POST'], host: 'shop.example.com', headers: { 'x-tenant': 'acme' } });
    const ok = req('/api/x', { method: 'POST', rawHeaders: ['x-tenant', 'acme'] });
    expect(m(ok)).toBe(true);
    expect(m({ ...ok, method: 'GET' })).toBe(false);
    expect(m({ ...ok, host: 'other' })).toBe(false);
    expect(m({ ...ok, path: '/apix' })).toBe(false);
    expect(m({ ...ok, rawHeaders: [] })).toBe(false);
  });

  it('names the http.route template after the match', () => {
    expect(httpRouteOf({ pathPrefix: '/api/checkout' })).toBe('/api/checkout/*');
    expect(httpRouteOf({ pathPrefix: '/api/' })).toBe('/api/*');
    expect(httpRouteOf({ pathPrefix: '/' })).toBe('/*');
    expect(httpRouteOf({ path: '/health' })).toBe('/health');
    expect(httpRouteOf({ pathRegex: '/o/[0-9]+' })).toBe('/o/[0-9]+');
    expect(httpRouteOf({})).toBe('/*');
  });
});
