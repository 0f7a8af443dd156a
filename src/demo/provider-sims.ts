import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Loopback simulators of two providers' limits, as their documentation describes them; the
 * provider-budget tests and `npm run bench:budgets` run gatehouse against them.
 *
 * Shopify GraphQL Admin API (shopify.dev, "API rate limits"): a leaky bucket of
 * `maximumAvailable` points per shop refilled at `restoreRate` per second. A query is admitted
 * only when the bucket holds its *requested* cost; the difference to its *actual* cost is given
 * back when it completes. A query that does not fit is answered HTTP 200 with
 * `errors[0].extensions.code = "THROTTLED"`. Every answer carries `extensions.cost` with
 * `requestedQueryCost`, `actualQueryCost` (null when throttled) and `throttleStatus`.
 *
 * Stripe (docs.stripe.com/rate-limits): above `maxInFlight` concurrent requests, a 429 with
 * `Stripe-Rate-Limited-Reason: endpoint-concurrency`.
 */

export interface SimServer {
  readonly url: string;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export interface ShopifyQueryCost {
  readonly requested: number;
  readonly actual: number;
}

export interface ShopifyOptions {
  readonly capacity: number;
  /** Points per second. */
  readonly restoreRate: number;
  /** Cost of a query by its name: `query Name { ... }`. Unknown queries cost `fallback`. */
  readonly costs: Readonly<Record<string, ShopifyQueryCost>>;
  readonly fallback?: ShopifyQueryCost;
  /** Time a query takes once admitted. */
  readonly latencyMs?: number;
  /** Adds this many bytes of data to each answer (to exercise streaming of large answers). */
  readonly padBytes?: number;
}

export interface ShopifyStats {
  /** Queries admitted and answered with data. */
  answered: number;
  /** THROTTLED answers sent. */
  throttled: number;
  /** Time of each THROTTLED answer, ms since start. */
  readonly throttledAt: number[];
  /** The lowest the bucket ever was; below 0 would be an overdraw (the simulator admits only what fits). */
  lowest: number;
  /** Actual cost of all answered queries. */
  spent: number;
  /** Time of each answered query, ms since start. */
  readonly answeredAt: number[];
  /** When the bucket first ran low (under 50 points): the initial burst is over, ms since start. */
  drainedAt: number | undefined;
}

export interface ShopifySim extends SimServer {
  readonly stats: ShopifyStats;
  /** The bucket now, per shop (`x-shopify-shop-domain`, '' without). */
  available(shop?: string): number;
  /** Empties a shop's bucket now (to start a test under contention). */
  drain(shop?: string): void;
}

export async function startShopifySim(options: ShopifyOptions): Promise<ShopifySim> {
  const { capacity, restoreRate } = options;
  const latencyMs = options.latencyMs ?? 10;
  const fallback = options.fallback ?? { requested: 10, actual: 10 };
  const started = performance.now();
  const buckets = new Map<string, { level: number; at: number }>();
  const stats: ShopifyStats = { answered: 0, throttled: 0, throttledAt: [], lowest: capacity, spent: 0, answeredAt: [], drainedAt: undefined };
  const pad = options.padBytes === undefined ? '' : 'x'.repeat(options.padBytes);

  const bucket = (shop: string) => {
    let b = buckets.get(shop);
    const now = performance.now();
    if (b === undefined) {
      b = { level: capacity, at: now };
      buckets.set(shop, b);
    }
    b.level = Math.min(capacity, b.level + (restoreRate * (now - b.at)) / 1000);
    b.at = now;
    return b;
  };
  const status = (shop: string) => ({ maximumAvailable: capacity, currentlyAvailable: Math.floor(bucket(shop).level), restoreRate });

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void readBody(req).then((body) => {
      const shop = String(req.headers['x-shopify-shop-domain'] ?? '');
      let query = '';
      try {
        const q = (JSON.parse(body.toString()) as { query?: unknown }).query;
        query = typeof q === 'string' ? q : '';
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"errors":"bad json"}');
        return;
      }
      const name = /query\s+(\w+)/.exec(query)?.[1] ?? '';
      const cost = options.costs[name] ?? fallback;
      const b = bucket(shop);
      if (b.level < cost.requested) {
        stats.throttled++;
        stats.throttledAt.push(performance.now() - started);
        const answer = {
          errors: [{ message: 'Throttled', extensions: { code: 'THROTTLED', documentation: 'https://shopify.dev/api/usage/rate-limits' } }],
          extensions: { cost: { requestedQueryCost: cost.requested, actualQueryCost: null, throttleStatus: status(shop) } },
        };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
        return;
      }
      b.level -= cost.requested;
      if (b.level < stats.lowest) stats.lowest = b.level;
      if (b.level < 50 && stats.drainedAt === undefined) stats.drainedAt = performance.now() - started;
      setTimeout(() => {
        bucket(shop).level += cost.requested - cost.actual;
        stats.answered++;
        stats.spent += cost.actual;
        stats.answeredAt.push(performance.now() - started);
        const answer = {
          data: { shop: { name: shop || 'demo', query: name, pad } },
          extensions: { cost: { requestedQueryCost: cost.requested, actualQueryCost: cost.actual, throttleStatus: status(shop) } },
        };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      }, latencyMs);
    });
  });
  const url = await listen(server);
  return {
    url,
    stats,
    available: (shop = '') => bucket(shop).level,
    drain(shop = '') {
      bucket(shop).level = 0;
    },
    close: closer(server),
  };
}

export interface StripeOptions {
  /** Requests in flight above this get a concurrency 429. */
  readonly maxInFlight: number;
  readonly latencyMs?: number;
}

export interface StripeStats {
  ok: number;
  limited: number;
  /** Most requests ever in flight at once (the limited ones included). */
  peak: number;
}

export interface StripeSim extends SimServer {
  readonly stats: StripeStats;
}

export async function startStripeSim(options: StripeOptions): Promise<StripeSim> {
  const latencyMs = options.latencyMs ?? 20;
  const stats: StripeStats = { ok: 0, limited: 0, peak: 0 };
  let inFlight = 0;
  const server = createServer((req, res) => {
    void readBody(req).then(() => {
      inFlight++;
      if (inFlight > stats.peak) stats.peak = inFlight;
      if (inFlight > options.maxInFlight) {
        inFlight--;
        stats.limited++;
        const error = { error: { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many concurrent requests. Please retry.' } };
        res.writeHead(429, { 'content-type': 'application/json', 'stripe-rate-limited-reason': 'endpoint-concurrency' }).end(JSON.stringify(error));
        return;
      }
      setTimeout(() => {
        inFlight--;
        stats.ok++;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"ch_sim","object":"charge","status":"succeeded"}');
      }, latencyMs);
    });
  });
  const url = await listen(server);
  return { url, stats, close: closer(server) };
}
