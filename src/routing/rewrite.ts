import type { RouteConfig } from '../config/schema.js';

export type PathRewrite = (path: string) => string;

const identity: PathRewrite = (p) => p;

/**
 * The upstream path for a matched request. `stripPrefix: /api` turns `/api/checkout` into
 * `/checkout` (and `/api` into `/`); `prefix: /v2` replaces the matched `pathPrefix`.
 */
export function compileRewrite(route: Pick<RouteConfig, 'rewrite' | 'match'>): PathRewrite {
  const { rewrite, match } = route;
  if (rewrite?.stripPrefix !== undefined) return replacePrefix(rewrite.stripPrefix, '');
  if (rewrite?.prefix !== undefined && match.pathPrefix !== undefined) return replacePrefix(match.pathPrefix, rewrite.prefix);
  return identity;
}

function replacePrefix(from: string, to: string): PathRewrite {
  const prefix = from.length > 1 && from.endsWith('/') ? from.slice(0, -1) : from;
  const target = to.endsWith('/') ? to.slice(0, -1) : to;
  if (prefix === '/') return (p) => join(target, p);
  const withSlash = prefix + '/';
  return (p) => {
    if (p === prefix) return target || '/';
    if (p.startsWith(withSlash)) return join(target, p.slice(prefix.length));
    return p;
  };
}

const join = (base: string, rest: string) => (base === '' ? rest : base + rest) || '/';
