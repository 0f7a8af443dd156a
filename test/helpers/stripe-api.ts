import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { startUpstream, type Upstream } from './upstream.js';

/*
 * A fake of Stripe's event list (`GET /v1/events`) on loopback, for reconciliation tests: it
 * checks the secret key the way Stripe does (`Authorization: Bearer sk_test_...`, 401 with
 * Stripe's error object otherwise), filters by `created[gte]`/`created[gt]`, pages newest first
 * with `limit` and `starting_after` and says `has_more`, as https://docs.stripe.com/api/events/list
 * documents. Events have Stripe's shape, and `webhook()` signs one the way Stripe posts it, with
 * the real `stripe` SDK.
 */

export type StripeEvent = {
  id: string;
  object: 'event';
  api_version: string;
  created: number;
  data: { object: Record<string, unknown> };
  livemode: false;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: string;
};

const sdk = new Stripe('sk_test_unused'); // only the webhook signing helper is used

const token = (n: number) => randomBytes(n).toString('base64url').replace(/[-_]/g, 'x').slice(0, n);

/** An event as Stripe renders it: `evt_...`, `created` in Unix seconds, the object in `data.object`. */
export function stripeEvent(type: string, createdS: number, object: Record<string, unknown> = {}): StripeEvent {
  const kind = type.split('.')[0]!;
  const prefix = { charge: 'ch', payment_intent: 'pi', checkout: 'cs', customer: 'cus', invoice: 'in' }[kind] ?? 'obj';
  return {
    id: `evt_${token(24)}`,
    object: 'event',
    api_version: '2024-06-20',
    created: createdS,
    data: { object: { id: `${prefix}_${token(24)}`, object: kind, livemode: false, ...object } },
    livemode: false,
    pending_webhooks: 2,
    request: { id: `req_${token(14)}`, idempotency_key: null },
    type,
  };
}

/** The webhook Stripe would post for `event`: its pretty-printed JSON and a `Stripe-Signature`. */
export function stripeWebhook(event: StripeEvent, secret: string): { body: string; headers: Record<string, string> } {
  const body = JSON.stringify(event, null, 2);
  return {
    body,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
      'stripe-signature': sdk.webhooks.generateTestHeaderString({ payload: body, secret }),
    },
  };
}

export interface FakeStripe {
  readonly url: string;
  readonly upstream: Upstream;
  /** Every event Stripe "has", in creation order; push more at any time. */
  readonly events: StripeEvent[];
  /** Query strings of the list requests answered (200 or not). */
  readonly listRequests: URLSearchParams[];
  /** Answers the next `n` list requests with `status` and Stripe's error object. */
  failNext(n: number, status: number): void;
}

/**
 * Starts the fake. `apiKey` is the only key it accepts; `pageCap` lowers Stripe's page maximum
 * (100) so a handful of events exercises paging.
 */
export async function startFakeStripe(options: { apiKey: string; pageCap?: number; events?: StripeEvent[] }): Promise<FakeStripe> {
  const events: StripeEvent[] = options.events ?? [];
  const listRequests: URLSearchParams[] = [];
  let failures: { left: number; status: number } = { left: 0, status: 500 };
  const error = (res: import('node:http').ServerResponse, status: number, type: string, message: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${token(14)}` });
    res.end(JSON.stringify({ error: { type, message, ...extra } }));
  };
  const upstream = await startUpstream((req, res) => {
    const url = new URL(req.url!, 'http://stripe.test');
    if (req.method !== 'GET' || url.pathname !== '/v1/events') {
      error(res, 404, 'invalid_request_error', `Unrecognized request URL (${req.method} ${url.pathname}).`);
      return;
    }
    listRequests.push(url.searchParams);
    if (req.headers.authorization !== `Bearer ${options.apiKey}`) {
      const given = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
      const message =
        given === undefined
          ? 'You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth.'
          : `Invalid API Key provided: ${given.slice(0, 8)}****${given.slice(-4)}`;
      error(res, 401, 'invalid_request_error', message);
      return;
    }
    if (failures.left > 0) {
      failures.left--;
      error(res, failures.status, failures.status === 429 ? 'rate_limit_error' : 'api_error', 'Simulated failure.');
      return;
    }
    const q = url.searchParams;
    const limit = Number(q.get('limit') ?? '10');
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      error(res, 400, 'invalid_request_error', 'Invalid integer: limit must be between 1 and 100.', { param: 'limit' });
      return;
    }
    const gte = q.has('created[gte]') ? Number(q.get('created[gte]')) : -Infinity;
    const gt = q.has('created[gt]') ? Number(q.get('created[gt]')) : -Infinity;
    // newest first; events of the same second in reverse order of creation, as Stripe lists them
    const listed = events
      .map((e, i) => ({ e, i }))
      .filter(({ e }) => e.created >= gte && e.created > gt)
      .sort((a, b) => b.e.created - a.e.created || b.i - a.i)
      .map(({ e }) => e);
    let start = 0;
    const after = q.get('starting_after');
    if (after !== null) {
      const at = listed.findIndex((e) => e.id === after);
      if (at < 0) {
        error(res, 400, 'invalid_request_error', `No such event: '${after}'`, { code: 'resource_missing', param: 'starting_after' });
        return;
      }
      start = at + 1;
    }
    const size = Math.min(limit, options.pageCap ?? 100);
    const data = listed.slice(start, start + size);
    res.writeHead(200, { 'content-type': 'application/json', 'request-id': `req_${token(14)}`, 'stripe-version': '2024-06-20' });
    res.end(JSON.stringify({ object: 'list', data, has_more: start + size < listed.length, url: '/v1/events' }, null, 2));
  });
  return {
    url: upstream.url,
    upstream,
    events,
    listRequests,
    failNext(n, status) {
      failures = { left: n, status };
    },
  };
}
