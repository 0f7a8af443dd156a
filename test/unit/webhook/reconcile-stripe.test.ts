import { describe, expect, it } from 'vitest';
import '../../helpers/cleanup.js';
import type { UpstreamCall, UpstreamClient, UpstreamResult } from '../../../src/core/upstream.js';
import { UpstreamError } from '../../../src/core/errors.js';
import { eventSourceOf } from '../../../src/webhook/reconcile/sources.js';
import { ReconcileError, type ListedEvent } from '../../../src/webhook/reconcile/source.js';
import { stripeEvents } from '../../../src/webhook/reconcile/stripe.js';
import { RECONCILE_PROVIDERS } from '../../../src/config/schema.js';
import { startFakeStripe, stripeEvent } from '../../helpers/stripe-api.js';

const KEY = 'sk_test_51Reconcile0000000000000000';

/**
 * A plain HTTP client standing in for gatehouse's upstream dispatch, which the integration tests
 * use: it adds the credential header as an upstream's `credentials.header` would.
 */
function client(base: string, authorization: string | undefined, calls: UpstreamCall[] = []): UpstreamClient {
  return {
    name: 'stripe-api',
    async call(call): Promise<UpstreamResult> {
      calls.push(call);
      const headers: Record<string, string> = {};
      for (let i = 0; i < call.headers.length; i += 2) headers[call.headers[i]!] = call.headers[i + 1]!;
      if (authorization !== undefined) headers.authorization = authorization;
      try {
        const res = await fetch(base + call.target, { method: call.method, headers, signal: AbortSignal.timeout(call.timeoutMs) });
        const flat: string[] = [];
        res.headers.forEach((v, k) => flat.push(k, v));
        return { status: res.status, headers: flat, body: Buffer.from(await res.arrayBuffer()), failure: undefined, traceId: '' };
      } catch (err) {
        return { status: 0, headers: [], body: Buffer.alloc(0), failure: new UpstreamError('connect-failure', (err as Error).message), traceId: '' };
      }
    },
  };
}

async function all(iterable: AsyncIterable<ListedEvent>): Promise<ListedEvent[]> {
  const out: ListedEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

const request = { route: 'hooks', sinceMs: 1_700_000_000_000, timeoutMs: 5000 };

describe('Stripe event source (GET /v1/events)', () => {
  it('lists the events created since the lookback, following has_more with starting_after', async () => {
    const old = stripeEvent('charge.succeeded', 1_699_999_000);
    const recent = Array.from({ length: 7 }, (_, i) => stripeEvent(i % 2 ? 'charge.refunded' : 'checkout.session.completed', 1_700_000_000 + i));
    const api = await startFakeStripe({ apiKey: KEY, pageCap: 3, events: [old, ...recent] });
    const calls: UpstreamCall[] = [];
    const listed = await all(stripeEvents.list(client(api.url, `Bearer ${KEY}`, calls), request));
    expect(listed.map((e) => e.id)).toEqual(recent.map((e) => e.id).reverse()); // newest first, the old one left out
    expect(listed[0]).toMatchObject({ type: recent[6]!.type, createdMs: 1_700_000_006_000, headers: ['content-type', 'application/json; charset=utf-8'] });
    expect(JSON.parse(listed[0]!.body.toString())).toEqual(recent[6]);
    // three pages of 3, 3 and 1, each after the last id of the page before
    expect(api.listRequests.map((q) => [q.get('created[gte]'), q.get('limit'), q.get('starting_after')])).toEqual([
      ['1700000000', '100', null],
      ['1700000000', '100', recent[4]!.id],
      ['1700000000', '100', recent[1]!.id],
    ]);
    expect(calls.every((c) => c.route === 'hooks' && c.method === 'GET' && c.body === null && c.timeoutMs === 5000)).toBe(true);
  });

  it('lists nothing when no event is that recent, in one request', async () => {
    const api = await startFakeStripe({ apiKey: KEY, events: [stripeEvent('charge.succeeded', 1_600_000_000)] });
    expect(await all(stripeEvents.list(client(api.url, `Bearer ${KEY}`), request))).toEqual([]);
    expect(api.listRequests).toHaveLength(1);
  });

  it('stops with a ReconcileError on a refused key, without quoting Stripe\'s message (it shows part of the key)', async () => {
    const api = await startFakeStripe({ apiKey: KEY, events: [stripeEvent('charge.succeeded', 1_700_000_001)] });
    const err = await all(stripeEvents.list(client(api.url, 'Bearer sk_test_wrongwrongwrong'), request)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReconcileError);
    expect((err as ReconcileError).status).toBe(401);
    expect((err as Error).message).toBe("upstream 'stripe-api' answered 401 to the event list (invalid_request_error)");
    expect((err as Error).message).not.toContain('sk_test');
  });

  it('yields the pages it got, then stops with a ReconcileError when a later page fails', async () => {
    const events = Array.from({ length: 4 }, (_, i) => stripeEvent('invoice.paid', 1_700_000_100 + i));
    const api = await startFakeStripe({ apiKey: KEY, pageCap: 2, events });
    const got: string[] = [];
    const source = stripeEvents.list(client(api.url, `Bearer ${KEY}`), request);
    const err = await (async () => {
      for await (const e of source) {
        got.push(e.id);
        if (got.length === 2) api.failNext(1, 429);
      }
    })().catch((e: unknown) => e);
    expect(got).toEqual([events[3]!.id, events[2]!.id]);
    expect((err as Error).message).toBe("upstream 'stripe-api' answered 429 to the event list (rate_limit_error)");
  });

  it('refuses an answer that is not a list of events, and a connection failure', async () => {
    const api = await startFakeStripe({ apiKey: KEY });
    const notJson = client(api.url, `Bearer ${KEY}`);
    const wrapped: UpstreamClient = {
      name: notJson.name,
      call: async (c) => ({ ...(await notJson.call(c)), body: Buffer.from('<html>gateway</html>') }),
    };
    await expect(all(stripeEvents.list(wrapped, request))).rejects.toThrow("upstream 'stripe-api' answered 200 with something other than a list of events");
    await api.upstream.close();
    await expect(all(stripeEvents.list(client(api.url, `Bearer ${KEY}`), request))).rejects.toThrow(/^listing events from upstream 'stripe-api' failed: /);
  });

  it('stops instead of looping when has_more comes with no further event', async () => {
    const stuck: UpstreamClient = {
      name: 'stripe-api',
      call: () =>
        Promise.resolve({
          status: 200,
          headers: ['content-type', 'application/json'],
          body: Buffer.from(JSON.stringify({ object: 'list', data: [], has_more: true })),
          failure: undefined,
          traceId: '',
        }),
    };
    await expect(all(stripeEvents.list(stuck, request))).rejects.toThrow('said has_more but gave no further event');
  });

  it('is the source of every provider the config lets reconcile', () => {
    for (const provider of RECONCILE_PROVIDERS) expect(eventSourceOf(provider)?.provider).toBe(provider);
    expect(eventSourceOf('shopify')).toBeUndefined();
  });
});
