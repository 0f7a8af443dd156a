import { describe, expect, it } from 'vitest';
import { compileRewrite } from '../../../src/routing/rewrite.js';

describe('path rewrite', () => {
  it('stripPrefix removes the prefix on whole segments, leaving at least /', () => {
    const r = compileRewrite({ match: { pathPrefix: '/api' }, rewrite: { stripPrefix: '/api' } });
    expect(r('/api/orders/7')).toBe('/orders/7');
    expect(r('/api')).toBe('/');
    expect(r('/api/')).toBe('/');
    expect(r('/apix')).toBe('/apix');
    expect(compileRewrite({ match: {}, rewrite: { stripPrefix: '/api/' } })('/api/x')).toBe('/x');
  });

  it('prefix replaces the matched pathPrefix', () => {
    const r = compileRewrite({ match: { pathPrefix: '/shop' }, rewrite: { prefix: '/v2' } });
    expect(r('/shop/orders')).toBe('/v2/orders');
    expect(r('/shop')).toBe('/v2');
    expect(compileRewrite({ match: { pathPrefix: '/shop/' }, rewrite: { prefix: '/v2/' } })('/shop/a')).toBe('/v2/a');
    expect(compileRewrite({ match: { pathPrefix: '/' }, rewrite: { prefix: '/v2' } })('/a')).toBe('/v2/a');
    expect(compileRewrite({ match: { pathPrefix: '/shop' }, rewrite: { prefix: '/' } })('/shop/a')).toBe('/a');
    expect(compileRewrite({ match: { pathPrefix: '/shop' }, rewrite: { prefix: '/' } })('/shop')).toBe('/');
  });

  it('leaves the path alone without a path rewrite', () => {
    expect(compileRewrite({ match: { pathPrefix: '/a' }, rewrite: { host: 'preserve' } })('/a/b')).toBe('/a/b');
    expect(compileRewrite({ match: {} })('/a/b')).toBe('/a/b');
  });
});
