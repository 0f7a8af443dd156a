import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Stripe from 'stripe';
import { readJson, sendJson, startHttpServer, type DemoServer } from './http.js';

/**
 * A payment provider in the spirit of Stripe's charges API, flaky on purpose: some charges
 * fail with 503 or 500 on their first try, some are throttled with 429 + Retry-After, some are
 * slow; a retry with the same Idempotency-Key goes through, as it does at Stripe after a blip.
 * The `x-demo-fault` request header picks the outcome of every try instead of chance, so the
 * printed curl commands always show what they promise.
 *
 * Like Stripe, it also sends webhooks: `POST /demo/send-webhook` signs a `charge.succeeded`
 * event with the stripe SDK's own helper and posts it to gatehouse's webhook route
 * (`?resend=last` sends the previous event again, as Stripe does when it retries).
 */

export type Fault = 'none' | '500' | '503' | '429' | 'slow' | 'down';

export interface ProviderOptions {
  readonly port: number;
  /** Where webhooks go (gatehouse's inbound webhook route) and the secret they are signed with. */
  readonly webhook?: { readonly url: string; readonly secret: string };
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

/** The fault for one try: the header's, else by chance, but only on a charge's first try. */
export function pickFault(header: string | undefined, rand: () => number, retried = false): Fault {
  if (header !== undefined && FAULTS.has(header)) return header as Fault;
  if (retried) return 'none';
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
  const tried = new Set<string>(); // Idempotency-Keys seen: their retries are not failed by chance
  const sender = options.webhook === undefined ? undefined : webhookSender(options.webhook);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://provider');
    if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/demo/send-webhook' && req.method === 'POST') {
      req.resume();
      if (sender === undefined) return sendJson(res, 404, { error: 'no webhook URL configured' });
      return sendJson(res, 200, await sender.send(url.searchParams.get('resend') === 'last', [...charges.values()].at(-1)));
    }

    const asked = req.headers['x-demo-fault'] as string | undefined;
    const key = req.headers['idempotency-key'] as string | undefined;
    const fault = pickFault(asked, rand, key !== undefined && tried.has(key));
    if (key !== undefined) tried.add(key);
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

interface WebhookAnswer {
  readonly sent: { readonly id: string; readonly type: string };
  readonly gatehouse: { readonly status: number; readonly webhook: string | null; readonly body: unknown };
}

/** Stripe's side of a webhook: an event, signed the way Stripe signs it, posted to gatehouse. */
function webhookSender(target: { readonly url: string; readonly secret: string }) {
  const stripe = new Stripe('sk_test_demo'); // the key is never used: only the webhook helper is
  let last: string | undefined;
  return {
    async send(resend: boolean, charge: Charge | undefined): Promise<WebhookAnswer> {
      const payload =
        resend && last !== undefined
          ? last
          : JSON.stringify({
              id: `evt_${randomBytes(8).toString('hex')}`,
              object: 'event',
              type: 'charge.succeeded',
              data: { object: charge ?? { id: `ch_${randomBytes(8).toString('hex')}`, object: 'charge', amount: 1200, currency: 'eur', status: 'succeeded' } },
            });
      last = payload;
      const signature = stripe.webhooks.generateTestHeaderString({ payload, secret: target.secret });
      const event = JSON.parse(payload) as { id: string; type: string };
      let answer: Response;
      try {
        answer = await fetch(target.url, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature, 'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)' }, body: payload });
      } catch (err) {
        return { sent: { id: event.id, type: event.type }, gatehouse: { status: 0, webhook: null, body: `cannot reach ${target.url}: ${(err as Error).message}` } };
      }
      const text = await answer.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { sent: { id: event.id, type: event.type }, gatehouse: { status: answer.status, webhook: answer.headers.get('gatehouse-webhook'), body } };
    },
  };
}
