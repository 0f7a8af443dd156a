import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readJson, sendJson, startHttpServer, type DemoServer } from './http.js';

/**
 * A payment provider in the spirit of Stripe's charges API, flaky on purpose: some requests
 * fail with 503 or 500, some are throttled with 429 + Retry-After, some are slow. The
 * `x-demo-fault` request header picks the outcome instead of chance, so the printed curl
 * commands always show what they promise.
 */

export type Fault = 'none' | '500' | '503' | '429' | 'slow' | 'down';

export interface ProviderOptions {
  readonly port: number;
  /** How long an `x-demo-fault: slow` answer takes: longer than the demo's payments timeout. */
  readonly slowMs?: number;
  /** [0, 1) random numbers; the failure mix below is drawn from it. */
  readonly rand?: () => number;
}

/** The random mix when no x-demo-fault header is sent: about one request in three misbehaves. */
const MIX: readonly [number, Fault][] = [
  [0.1, '503'],
  [0.05, '500'],
  [0.1, '429'],
  [0.1, 'slow'],
];

const FAULTS = new Set<string>(['none', '500', '503', '429', 'slow', 'down']);

export function pickFault(header: string | undefined, rand: () => number): Fault {
  if (header !== undefined && FAULTS.has(header)) return header as Fault;
  let r = rand();
  for (const [p, fault] of MIX) {
    if (r < p) return fault;
    r -= p;
  }
  return 'none';
}

interface Charge {
  readonly id: string;
  readonly object: 'charge';
  readonly amount: number;
  readonly currency: string;
  readonly status: 'succeeded';
}

export function startFlakyProvider(options: ProviderOptions): Promise<DemoServer> {
  const rand = options.rand ?? Math.random;
  const slowMs = options.slowMs ?? 3_000;
  const charges = new Map<string, Charge>();
  const byIdempotencyKey = new Map<string, Charge>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://provider');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });

    const asked = req.headers['x-demo-fault'] as string | undefined;
    const fault = pickFault(asked, rand);
    switch (fault) {
      case 'down':
        // no answer at all: the connection just closes, as when a provider's load balancer drops it
        req.socket.destroy();
        return;
      case '503':
        return sendJson(res, 503, { error: { type: 'api_error', message: 'temporarily unavailable, try again' } });
      case '500':
        return sendJson(res, 500, { error: { type: 'api_error', message: 'something went wrong on our side' } });
      case '429':
        return sendJson(res, 429, { error: { type: 'rate_limit_error', message: 'too many requests' } }, { 'retry-after': '1' });
      case 'slow':
        // by chance: slow but in time (0.5-1.5 s); when asked for: too slow for the route timeout
        await new Promise((resolve) => setTimeout(resolve, asked === 'slow' ? slowMs : 500 + rand() * 1000));
        break;
      case 'none':
        break;
    }

    if (url.pathname === '/v1/charges' && req.method === 'POST') {
      const body = await readJson(req);
      const amount = Number(body?.amount ?? 0);
      if (!Number.isInteger(amount) || amount <= 0) {
        return sendJson(res, 400, { error: { type: 'invalid_request_error', message: 'amount must be a positive integer (cents)' } });
      }
      // An Idempotency-Key seen before returns the first charge: a retried request never pays twice.
      const key = req.headers['idempotency-key'] as string | undefined;
      const earlier = key === undefined ? undefined : byIdempotencyKey.get(key);
      if (earlier !== undefined) return sendJson(res, 200, earlier, { 'idempotent-replayed': 'true' });
      const charge: Charge = {
        id: `ch_${randomBytes(8).toString('hex')}`,
        object: 'charge',
        amount,
        currency: typeof body?.currency === 'string' ? body.currency : 'eur',
        status: 'succeeded',
      };
      charges.set(charge.id, charge);
      if (key !== undefined) byIdempotencyKey.set(key, charge);
      return sendJson(res, 201, charge);
    }
    const m = /^\/v1\/charges\/([\w-]+)$/.exec(url.pathname);
    if (m && req.method === 'GET') {
      const charge = charges.get(m[1]!);
      return charge ? sendJson(res, 200, charge) : sendJson(res, 404, { error: { type: 'invalid_request_error', message: 'no such charge' } });
    }
    return sendJson(res, 404, { error: { type: 'invalid_request_error', message: `no such endpoint ${req.method} ${url.pathname}` } });
  }

  return startHttpServer(options.port, handle);
}
