import { createRequire } from 'node:module';

/**
 * Cache-Control parsing is undici's (`lib/util/cache.js`, the parser behind its cache
 * interceptor): it handles quoted arguments, qualified `private="..."`/`no-cache="..."`, repeated
 * and malformed directives (a malformed `no-store` still counts) the way RFC 9111 §5.2 asks. It
 * is not part of undici's public API, so it is reached through this one file, typed here, and
 * test/unit/cache/directives.test.ts pins what we rely on: an undici upgrade that moves it fails
 * there, not in production.
 */
export interface Directives {
  readonly 'max-age'?: number;
  readonly 's-maxage'?: number;
  readonly 'max-stale'?: number;
  readonly 'min-fresh'?: number;
  readonly 'stale-while-revalidate'?: number;
  readonly 'stale-if-error'?: number;
  readonly public?: true;
  readonly private?: true | string[];
  readonly 'no-store'?: true;
  readonly 'no-cache'?: true | string[];
  readonly 'must-revalidate'?: true;
  readonly 'proxy-revalidate'?: true;
  readonly immutable?: true;
  readonly 'only-if-cached'?: true;
}

interface UndiciCacheUtil {
  parseCacheControlHeader(header: string | string[]): Directives;
  isEtagUsable(etag: string): boolean;
}

const util = createRequire(import.meta.url)('undici/lib/util/cache.js') as UndiciCacheUtil;

const NONE: Directives = Object.freeze({});

/** The directives of a Cache-Control field (several fields joined with ", "); {} when absent. */
export function parseDirectives(value: string | undefined): Directives {
  return value === undefined || value === '' ? NONE : util.parseCacheControlHeader(value);
}

/** An ETag worth revalidating with (`"x"` or `W/"x"`, not empty). */
export const isEtagUsable = (etag: string): boolean => util.isEtagUsable(etag);

/** An HTTP-date (IMF-fixdate, RFC 850 or asctime) as ms since the epoch; undefined when invalid. */
export function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}
