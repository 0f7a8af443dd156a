import pino from 'pino';
import { describe, expect, it } from 'vitest';
import '../../helpers/cleanup.js';
import { onCleanup } from '../../helpers/cleanup.js';
import { systemClock } from '../../../src/core/clock.js';
import type { UpstreamClient, UpstreamResult } from '../../../src/core/upstream.js';
import { UpstreamError } from '../../../src/core/errors.js';
import { createReconciler, type FeedResult, type ReconcileReport } from '../../../src/webhook/reconcile/reconciler.js';
import type { ListedEvent } from '../../../src/webhook/reconcile/source.js';
import { stripeEvents } from '../../../src/webhook/reconcile/stripe.js';
import { startFakeStripe, stripeEvent } from '../../helpers/stripe-api.js';
import { stall, startUpstream } from '../../helpers/upstream.js';

const KEY = 'sk_test_51Reconciler000000000000000';

/** Stands in for gatehouse's upstream dispatch (the integration tests use the real one). */
function client(base: string): UpstreamClient {
  return {
    name: 'stripe-api',
    async call(call): Promise<UpstreamResult> {
      try {
        const res = await fetch(base + call.target, { headers: { authorization: `Bearer ${KEY}` }, signal: call.signal ?? null });
        const flat: string[] = [];
        res.headers.forEach((v, k) => flat.push(k, v));
        return { status: res.status, headers: flat, body: Buffer.from(await res.arrayBuffer()), failure: undefined, traceId: '' };
      } catch (err) {
        return { status: 0, headers: [], body: Buffer.alloc(0), failure: new UpstreamError('reset', (err as Error).message), traceId: '' };
      }
    },
  };
}

/** A route's de-duplication, as the store does it: an id is stored once. */
function store(received: string[] = []) {
  const ids = new Set(received);
  const fed: ListedEvent[] = [];
  return {
    fed,
    receive: (id: string) => ids.add(id),
    feed: (e: ListedEvent): Promise<FeedResult> => {
      if (ids.has(e.id)) return Promise.resolve('duplicate');
      ids.add(e.id);
      fed.push(e);
      return Promise.resolve('stored');
    },
  };
}

const nowS = () => Math.floor(systemClock.now() / 1000);
const cfg = { upstream: 'stripe-api', every: 60_000, lookback: 3_600_000, settle: 60_000 };

function reconciler(base: string, feed: (e: ListedEvent) => Promise<FeedResult>, reports: ReconcileReport[] = []) {
  const r = createReconciler({
    route: 'hooks',
    cfg,
    source: stripeEvents,
    client: () => client(base),
    feed,
    timeoutMs: 5000,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    observer: { reconciled: (_route, report) => reports.push(report) },
  });
  onCleanup(() => r.stop());
  return r;
}

describe('reconciliation (provider-neutral runner)', () => {
  it('feeds exactly the listed events never received, and nothing on the next listing', async () => {
    const t = nowS();
    const received = [stripeEvent('charge.succeeded', t - 600), stripeEvent('charge.refunded', t - 500)];
    const missed = [stripeEvent('checkout.session.completed', t - 400), stripeEvent('invoice.paid', t - 300)];
    const api = await startFakeStripe({ apiKey: KEY, pageCap: 1, events: [...received, missed[0]!, missed[1]!] });
    const s = store(received.map((e) => e.id));
    const reports: ReconcileReport[] = [];
    const r = reconciler(api.url, s.feed, reports);
    expect(await r.run()).toEqual({ listed: 4, reconciled: 2, error: undefined });
    expect(s.fed.map((e) => e.id).sort()).toEqual(missed.map((e) => e.id).sort());
    expect(await r.run()).toEqual({ listed: 4, reconciled: 0, error: undefined });
    expect(reports).toHaveLength(2);
    // created within lookback only
    expect(Number(api.listRequests[0]!.get('created[gte]'))).toBeGreaterThanOrEqual(t - 3600);
  });

  it('leaves events younger than settle to their webhook, and takes them once they are older', async () => {
    const t = nowS();
    const young = stripeEvent('charge.succeeded', t);
    const api = await startFakeStripe({ apiKey: KEY, events: [young] });
    const s = store();
    const r = reconciler(api.url, s.feed);
    expect(await r.run()).toEqual({ listed: 1, reconciled: 0, error: undefined });
    young.created = t - 120; // as it will be listed two minutes on
    expect(await r.run()).toEqual({ listed: 1, reconciled: 1, error: undefined });
  });

  it('keeps what it fed before a page failed, and the next listing finishes the job', async () => {
    const t = nowS();
    const events = Array.from({ length: 4 }, (_, i) => stripeEvent('charge.succeeded', t - 1000 + i));
    const api = await startFakeStripe({ apiKey: KEY, pageCap: 2, events });
    const s = store();
    let failed = false;
    const r = reconciler(api.url, async (e) => {
      const result = await s.feed(e);
      if (s.fed.length === 2 && !failed) {
        failed = true;
        api.failNext(1, 500); // the page after the first fails
      }
      return result;
    });
    expect(await r.run()).toEqual({ listed: 2, reconciled: 2, error: "upstream 'stripe-api' answered 500 to the event list (api_error)" });
    expect(await r.run()).toEqual({ listed: 4, reconciled: 2, error: undefined });
    expect(new Set(s.fed.map((e) => e.id)).size).toBe(4);
  });

  it('stops at once with a listing in progress, and never runs two listings at a time', async () => {
    const stalled = await startUpstream(stall);
    const s = store();
    const r = reconciler(stalled.url, s.feed);
    const first = r.run();
    expect(r.run()).toBe(first);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await r.stop();
    expect((await first).error).toMatch(/failed|aborted/);
  });

  it('reports a store that cannot take an event as an early stop', async () => {
    const api = await startFakeStripe({ apiKey: KEY, events: [stripeEvent('charge.succeeded', nowS() - 300)] });
    const r = reconciler(api.url, () => Promise.reject(new Error('SQLITE_FULL')));
    expect(await r.run()).toEqual({ listed: 1, reconciled: 0, error: 'could not store a listed event: SQLITE_FULL' });
  });
});
