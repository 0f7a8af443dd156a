/**
 * Where webhook events wait for delivery, and the de-duplication record. Two implementations
 * behave the same (one conformance suite runs against both): sqlite (embedded, durable; also
 * backs `memory` stores with an in-memory database) and Redis (shared by replicas).
 *
 * Life of an event: accept() stores it `pending` (or `waiting` behind an earlier event with the
 * same ordering key) in the same atomic step that claims its event id; claim() leases due
 * events to one worker (`delivering`, attempts + 1); the worker ends the lease with delivered(),
 * retry() (back to `pending` at a later time) or dead(); release() hands it back untried. A lease
 * that expires (its worker died) makes the event due again.
 */

export type EventState = 'pending' | 'waiting' | 'delivering' | 'delivered' | 'dead';

export interface IncomingEvent {
  /** gatehouse's own id (`gatehouse-webhook-id`). */
  readonly id: string;
  readonly route: string;
  readonly provider: string;
  /** The provider's event id, the de-duplication key. */
  readonly eventId: string;
  /** Wall-clock ms. */
  readonly receivedAt: number;
  readonly method: string;
  /** The normalised path and query as received (the route's rewrite applies at delivery). */
  readonly path: string;
  /** Headers to deliver: [name, value, ...]. */
  readonly headers: readonly string[];
  readonly body: Buffer;
  /** `delivery.orderBy`'s value: events with the same key are delivered one at a time, in order. */
  readonly orderKey: string | undefined;
  readonly requestId: string;
  /** The intake span as a traceparent, to link delivery spans to it. */
  readonly trace: string | undefined;
}

export interface StoredEvent extends IncomingEvent {
  readonly state: EventState;
  /** Delivery attempts made or started. */
  readonly attempts: number;
  readonly nextAt: number;
  readonly lastError: string | undefined;
  readonly deadAt: number | undefined;
  readonly deliveredAt: number | undefined;
}

export type AcceptResult = 'stored' | 'duplicate';

export interface WebhookStore {
  /** Whether an acknowledged event survives a crash of this process. */
  readonly durable: boolean;
  /** Claims the event id for `ttlMs` and stores the event, atomically; 'duplicate' stores nothing. */
  accept(event: IncomingEvent, ttlMs: number, nowMs: number): Promise<AcceptResult>;
  /** Leases up to `limit` due events of a route to `owner` until `leaseUntil`. */
  claim(route: string, owner: string, nowMs: number, leaseUntil: number, limit: number): Promise<StoredEvent[]>;
  /** A 2xx arrived. `keepBody`: the route inspects bodies; otherwise the body is dropped now. */
  delivered(id: string, nowMs: number, keepBody: boolean): Promise<void>;
  /** Failed; due again at `nextAt`. Ignored when `owner` no longer holds the lease. */
  retry(id: string, owner: string, nextAt: number, error: string): Promise<void>;
  /** Out of attempts: onto the dead-letter list (or dropped when `keep` is false). */
  dead(id: string, owner: string, nowMs: number, error: string, keep: boolean): Promise<void>;
  /** Hands a leased event back untried (shutdown): due now, the attempt not counted. */
  release(id: string, owner: string, nowMs: number): Promise<void>;
  /** When the route's next event falls due (or a lease expires); undefined when none waits. */
  nextDueAt(route: string): Promise<number | undefined>;
  /** Events of a route not yet delivered or dead. */
  pending(route: string): Promise<number>;
  /** Dead-lettered events of every route, oldest first. */
  listDead(): Promise<StoredEvent[]>;
  /** Makes a dead event due now with fresh attempts; undefined when no dead event has that id. */
  replay(id: string, nowMs: number): Promise<StoredEvent | undefined>;
  /** The latest events of a route, newest first. */
  recent(route: string, limit: number): Promise<StoredEvent[]>;
  /** Forgets expired event ids and old finished events. */
  maintain(nowMs: number): Promise<void>;
}

/** Finished events kept per route for /admin/webhooks/recent. */
export const RECENT_KEPT = 100;
