import type { IncomingMessage, ServerResponse } from 'node:http';
import { readJson, sendJson, startHttpServer, type DemoServer } from './http.js';

/**
 * A commerce platform's admin API in the spirit of Shopify's REST API: reliable, but it allows
 * an app 2 requests per second (a leaky bucket that holds a few more) and answers 429 with
 * `Retry-After` beyond that, as Shopify does. Through gatehouse's queued quota the store's calls
 * are paced under that limit instead of being refused.
 */

export interface ShopApiOptions {
  readonly port: number;
  /** Monotonic milliseconds; the bucket below leaks by it. */
  readonly now?: () => number;
}

/** What the API allows: `ratePerS` requests per second, up to `capacity` in a burst. */
const RATE_PER_S = 2;
const CAPACITY = 4;

export function startShopApi(options: ShopApiOptions): Promise<DemoServer> {
  const now = options.now ?? (() => performance.now());
  let level = 0; // requests in the bucket; it leaks RATE_PER_S per second
  let at = now();
  let orders = 0;

  const admit = (): boolean => {
    const t = now();
    level = Math.max(0, level - ((t - at) / 1000) * RATE_PER_S);
    at = t;
    if (level + 1 > CAPACITY) return false;
    level += 1;
    return true;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://shop').pathname;
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    const limit = { 'x-shop-api-call-limit': `${Math.ceil(level)}/${CAPACITY}` };
    if (!admit()) {
      req.resume();
      return sendJson(res, 429, { errors: 'Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service.' }, { ...limit, 'retry-after': '1' });
    }
    if (path === '/shopify/inventory' && req.method === 'GET') {
      return sendJson(res, 200, { inventory_levels: [{ sku: 'mug', available: 40 }, { sku: 'tee', available: 12 }, { sku: 'stickers', available: 300 }] }, limit);
    }
    if (path === '/shopify/orders' && req.method === 'POST') {
      const body = await readJson(req);
      return sendJson(res, 201, { order: { id: 1000 + ++orders, note: body?.note ?? null } }, limit);
    }
    req.resume();
    return sendJson(res, 404, { errors: 'Not Found' });
  }

  return startHttpServer(options.port, handle);
}
