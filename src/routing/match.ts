import type { RouteConfig } from '../config/schema.js';
import { compileLinearRegex } from '../core/regex.js';

/** The request facts a route matches on, read once per request. */
export interface MatchInput {
  readonly method: string;
  /** Lowercase host without port. */
  readonly host: string;
  readonly path: string;
  readonly rawHeaders: readonly string[];
}

export type Matcher = (input: MatchInput) => boolean;

/** The route's match as the `http.route` template: `/api/checkout/*` for a pathPrefix. */
export function httpRouteOf(match: RouteConfig['match']): string {
  if (match.path !== undefined) return match.path;
  if (match.pathPrefix !== undefined) return match.pathPrefix === '/' ? '/*' : `${trimSlash(match.pathPrefix)}/*`;
  if (match.pathRegex !== undefined) return match.pathRegex;
  return '/*';
}

/**
 * Compiles one route's `match` into a predicate; every Set, regex and lowercase name is built
 * here, once, so matching allocates nothing. Cheap tests run first.
 */
export function compileMatch(match: RouteConfig['match']): Matcher {
  const tests: Matcher[] = [];

  if (match.path !== undefined) {
    const exact = match.path;
    tests.push((i) => i.path === exact);
  } else if (match.pathPrefix !== undefined) {
    // Whole segments: /api matches /api and /api/x, never /apix (Gateway API PathPrefix).
    const prefix = trimSlash(match.pathPrefix);
    if (prefix !== '') {
      const withSlash = prefix + '/';
      tests.push((i) => i.path === prefix || i.path.startsWith(withSlash));
    }
  } else if (match.pathRegex !== undefined) {
    const matches = compileLinearRegex(match.pathRegex); // the whole path, as Envoy's safe_regex
    tests.push((i) => matches(i.path));
  }

  if (match.methods !== undefined) {
    const methods = new Set<string>(match.methods);
    // HEAD is answered like GET by every HTTP server: a GET route takes HEAD too.
    if (methods.has('GET')) methods.add('HEAD');
    tests.push((i) => methods.has(i.method));
  }

  if (match.host !== undefined) {
    const host = match.host;
    if (host.startsWith('*.')) {
      const suffix = host.slice(1); // `.example.com`: exactly one more label
      tests.push((i) => i.host.endsWith(suffix) && i.host.length > suffix.length && !i.host.slice(0, -suffix.length).includes('.'));
    } else {
      tests.push((i) => i.host === host);
    }
  }

  if (match.headers !== undefined) {
    const wanted = Object.entries(match.headers).map(([n, v]) => [n.toLowerCase(), v] as const);
    tests.push((i) => wanted.every(([n, v]) => hasHeaderValue(i.rawHeaders, n, v)));
  }

  switch (tests.length) {
    case 0:
      return () => true;
    case 1:
      return tests[0]!;
    case 2: {
      const [a, b] = tests as [Matcher, Matcher];
      return (i) => a(i) && b(i);
    }
    default:
      return (i) => tests.every((t) => t(i));
  }
}

function hasHeaderValue(raw: readonly string[], lowerName: string, value: string): boolean {
  const len = lowerName.length;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // compare lengths first: most names differ there, and toLowerCase() allocates
    if (name.length === len && raw[i + 1] === value && (name === lowerName || name.toLowerCase() === lowerName)) return true;
  }
  return false;
}

const trimSlash = (p: string) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p === '/' ? '' : p);
