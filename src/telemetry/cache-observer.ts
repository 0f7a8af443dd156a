import type { CacheObserver, CacheResult } from '../cache/read-path.js';
import type { Exchange } from '../core/exchange.js';
import { ATTR } from '../core/names.js';
import type { CounterCell } from './metrics.js';
import type { Metrics } from './metrics.js';

const RESULTS: readonly CacheResult[] = ['hit', 'miss', 'stale', 'revalidated', 'bypass'];

/**
 * The read path as metrics and span attributes: `gatehouse_cache_requests_total{route,result}`,
 * `gatehouse_coalesced_requests_total{route}`, and `gatehouse.cache.result` /
 * `gatehouse.coalesced` on the request's SERVER span. Every series of a route exists from its
 * compilation (at 0), so rate() and ratio queries work before the first hit.
 */
export function createCacheObserver(metrics: Metrics): CacheObserver {
  return {
    forRoute(route) {
      const cells = new Map<CacheResult, CounterCell>(RESULTS.map((result) => [result, metrics.cacheRequests({ route, result })]));
      const coalesced = metrics.coalescedRequests({ route });
      return {
        result(ex: Exchange, result: CacheResult) {
          cells.get(result)!.value++;
          ex.span?.setAttribute(ATTR.cacheResult, result);
        },
        coalesced(ex: Exchange) {
          coalesced.value++;
          ex.span?.setAttribute(ATTR.coalesced, true);
        },
      };
    },
  };
}
