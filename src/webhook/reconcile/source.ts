import type { UpstreamClient } from '../../core/upstream.js';

/*
 * Reconciliation asks the provider which events it has sent, so a webhook that never arrived
 * (an outage of the webhook path, a provider that gave up retrying) is still delivered (SPEC §14).
 * An EventSource is one provider's event-list API: it pages through the events created since a
 * time and yields them. Adding a provider is one file with one EventSource, listed in sources.ts
 * (and its name in the config's RECONCILE_PROVIDERS). Everything else — which events were never
 * received, storing and delivering them, counting — is the provider-neutral runner's.
 */

/** One event as the provider lists it. */
export interface ListedEvent {
  /** The provider's event id: the same one its webhook carries, so de-duplication meets it. */
  readonly id: string;
  /** The event type, for the destinations' `types`; undefined when the provider names none. */
  readonly type: string | undefined;
  /** When the provider created the event, wall-clock ms. */
  readonly createdMs: number;
  /** The event as its webhook would carry it (the request body). */
  readonly body: Buffer;
  /** Headers its webhook would carry besides the signature, flat: [name, value, ...] (content-type). */
  readonly headers: readonly string[];
}

export interface ListRequest {
  /** The route listing: its metrics, span and log. */
  readonly route: string;
  /** Events created at or after this wall-clock ms (the `lookback`). */
  readonly sinceMs: number;
  /** Bounds each page's request, answer included. */
  readonly timeoutMs: number;
  /** Aborts the listing between pages and during one (shutdown). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * A provider's event-list API, through `client` (the configured upstream: its credentials, TLS,
 * breaker and CLIENT spans apply). Yields every event created since `sinceMs`, in whatever order
 * the API pages; throws a ReconcileError when a page cannot be had, after yielding the earlier
 * pages' events (they are real: the runner may deliver them).
 */
export interface EventSource {
  readonly provider: string;
  list(client: UpstreamClient, request: ListRequest): AsyncIterable<ListedEvent>;
}

/** Why a listing stopped early: safe to log (no credentials, no bodies). */
export class ReconcileError extends Error {
  constructor(
    message: string,
    /** The provider's HTTP status, 0 when none came. */
    readonly status: number,
  ) {
    super(message);
    this.name = 'ReconcileError';
  }
}
