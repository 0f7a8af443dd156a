import { findHeader } from '../../core/headers.js';
import type { UpstreamResult } from '../../core/upstream.js';
import { ReconcileError, type EventSource, type ListedEvent } from './source.js';

/** Stripe's largest page. */
const PAGE = 100;
/** A page of 100 events is some 300 KiB in practice; a bigger answer is not a page of events. */
const MAX_PAGE_BYTES = 16 * 1024 * 1024;

interface StripeList {
  readonly data: unknown[];
  readonly has_more: boolean;
}

/**
 * Stripe: `GET /v1/events?created[gte]=<unix s>&limit=100`, newest first, following `has_more`
 * with `starting_after=<last id of the page>` (https://docs.stripe.com/api/events/list). Stripe
 * keeps events for 30 days. Each event is the object its webhook posts as the body, so it is
 * delivered as JSON of that object.
 */
export const stripeEvents: EventSource = {
  provider: 'stripe',
  async *list(client, { route, sinceMs, timeoutMs, signal }) {
    const created = String(Math.floor(sinceMs / 1000));
    let after: string | undefined;
    const seen = new Set<string>();
    for (;;) {
      if (signal?.aborted) throw new ReconcileError('listing Stripe events was aborted', 0);
      const query = new URLSearchParams({ 'created[gte]': created, limit: String(PAGE) });
      if (after !== undefined) query.set('starting_after', after);
      const result = await client.call({
        route,
        method: 'GET',
        target: `/v1/events?${query.toString()}`,
        headers: ['accept', 'application/json'],
        body: null,
        timeoutMs,
        signal,
        maxBodyBytes: MAX_PAGE_BYTES,
      });
      const page = parsePage(result, client.name);
      let last: string | undefined;
      for (const item of page.data) {
        const event = toListed(item);
        if (event === undefined) throw new ReconcileError(`upstream '${client.name}' listed an event without a string id and a numeric created`, result.status);
        last = event.id;
        // a page boundary that shifts under new events can list one twice: yield it once
        if (seen.has(event.id)) continue;
        seen.add(event.id);
        yield event;
      }
      if (!page.has_more) return;
      if (last === undefined || last === after) {
        throw new ReconcileError(`upstream '${client.name}' said has_more but gave no further event`, result.status);
      }
      after = last;
    }
  },
};

function parsePage(result: UpstreamResult, upstream: string): StripeList {
  if (result.failure !== undefined) throw new ReconcileError(`listing events from upstream '${upstream}' failed: ${result.failure.message}`, 0);
  if (result.status !== 200) {
    // Stripe's error object names a type and code; its message may quote part of the key, so it is left out
    const error = (parseJson(result) as { error?: { type?: unknown; code?: unknown } } | undefined)?.error;
    const what = [error?.type, error?.code].filter((v): v is string => typeof v === 'string').join(', ');
    throw new ReconcileError(`upstream '${upstream}' answered ${result.status} to the event list${what ? ` (${what})` : ''}`, result.status);
  }
  const contentType = findHeader(result.headers, 'content-type') ?? '';
  const body = contentType.includes('json') ? parseJson(result) : undefined;
  if (body === null || typeof body !== 'object' || !Array.isArray((body as StripeList).data) || typeof (body as StripeList).has_more !== 'boolean') {
    throw new ReconcileError(`upstream '${upstream}' answered 200 with something other than a list of events`, result.status);
  }
  return body as StripeList;
}

function parseJson(result: UpstreamResult): unknown {
  try {
    return JSON.parse(result.body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

const JSON_HEADERS = ['content-type', 'application/json; charset=utf-8'] as const;

function toListed(item: unknown): ListedEvent | undefined {
  if (item === null || typeof item !== 'object') return undefined;
  const { id, type, created } = item as { id?: unknown; type?: unknown; created?: unknown };
  if (typeof id !== 'string' || id === '' || typeof created !== 'number' || !Number.isFinite(created)) return undefined;
  return {
    id,
    type: typeof type === 'string' && type !== '' ? type : undefined,
    createdMs: created * 1000,
    body: Buffer.from(JSON.stringify(item)),
    headers: JSON_HEADERS,
  };
}
