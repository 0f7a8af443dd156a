/**
 * The durable delivery engine's store (SPEC §7, §11): where accepted messages wait until they
 * are delivered, shared by webhooks and the outbox. Two implementations behave the same (one
 * conformance suite runs against both): sqlite (embedded, durable; also backs `memory` stores
 * with an in-memory database) and Redis (shared by replicas).
 *
 * A *message* is what was accepted once: the request to send (method, path, headers, body) and
 * where it came from. Each message has one or more *deliveries*, one per destination, each with
 * its own state, attempts, back-off and dead letter: today a route's upstream (`upstream`) and an
 * outbox callback (`callback`); a webhook fan-out adds one per destination.
 *
 * Life of a delivery: accept() stores the message with its deliveries `pending` (or `waiting`
 * behind an earlier delivery with the same ordering key to the same destination) in one atomic
 * step that also claims its de-duplication key; claim() leases due deliveries to one worker
 * (`delivering`, attempts + 1); the worker ends the lease with delivered(), retry() (back to
 * `pending` at a later time) or dead(); release() hands it back untried. A lease that expires
 * (its worker died) makes the delivery due again. delivered() and dead() may add deliveries of
 * the same message in the same step (`then`: the outbox's callback), so none is lost to a crash.
 */

export type DeliveryState = 'pending' | 'waiting' | 'delivering' | 'delivered' | 'dead' | 'cancelled';
export type MessageKind = 'webhook' | 'outbox';

/** The destination name of a route's own upstream. */
export const UPSTREAM = 'upstream';
/** The destination name of an outbox callback. */
export const CALLBACK = 'callback';

export interface NewMessage {
  /** gatehouse's own id (`gatehouse-webhook-id`, `gatehouse-outbox-id`). */
  readonly id: string;
  readonly route: string;
  readonly kind: MessageKind;
  /** Wall-clock ms when it was accepted. */
  readonly createdAt: number;
  readonly method: string;
  /** Path and query: as received for a webhook (the rewrite applies at delivery), after the rewrite for the outbox. */
  readonly path: string;
  /** Headers to deliver: [name, value, ...]. */
  readonly headers: readonly string[];
  readonly body: Buffer;
  readonly requestId: string;
  /** The accepting request's span as a traceparent, to link delivery spans to it. */
  readonly trace: string | undefined;
  /** A webhook's provider and its event id. */
  readonly provider?: string | undefined;
  readonly eventId?: string | undefined;
  /** The Idempotency-Key every try of an outbox message carries. */
  readonly idempotencyKey?: string | undefined;
}

export interface NewDelivery {
  readonly destination: string;
  /** Deliveries to the same destination with the same key go one at a time, in acceptance order. */
  readonly orderKey?: string | undefined;
  /** Wall-clock ms after which it is not tried again (the outbox's maxAge); undefined = no limit. */
  readonly expiresAt?: number | undefined;
  /** A body of this delivery's own (a callback's JSON); undefined = the message's. */
  readonly payload?: Buffer | undefined;
  /** Tries already made before it was stored (a fallback's live try). */
  readonly attempts?: number | undefined;
  readonly lastError?: string | undefined;
  readonly lastStatus?: number | undefined;
}

/** One delivery with its message: what a worker sends and what the admin API shows. */
export interface StoredDelivery extends NewMessage {
  readonly destination: string;
  readonly state: DeliveryState;
  /** Tries made or started. */
  readonly attempts: number;
  readonly nextAt: number;
  readonly orderKey: string | undefined;
  readonly expiresAt: number | undefined;
  readonly payload: Buffer | undefined;
  readonly lastError: string | undefined;
  /** The last HTTP status an upstream answered with. */
  readonly lastStatus: number | undefined;
  readonly deadAt: number | undefined;
  readonly deliveredAt: number | undefined;
}

export interface DeliveryRef {
  readonly id: string;
  readonly destination: string;
}

export type AcceptResult = 'stored' | 'duplicate';

export interface ListQuery {
  readonly kind: MessageKind;
  readonly route?: string | undefined;
  /** Only deliveries in one of these states. */
  readonly states?: readonly DeliveryState[] | undefined;
  /** Only deliveries to this destination; undefined = every destination of each message. */
  readonly destination: string | undefined;
  /** Only messages accepted at or after this wall-clock ms. */
  readonly from?: number | undefined;
  /** Only messages accepted before this wall-clock ms. */
  readonly to?: number | undefined;
  readonly limit: number;
}

/** States a delivery may be replayed from: dead (the dead-letter list), or delivered too (a bulk replay). */
export type ReplayableState = 'dead' | 'delivered';

export interface DeliveryStore {
  /** Whether an acknowledged message survives a crash of this process. */
  readonly durable: boolean;
  /**
   * Stores a message and its deliveries, durably (fsync'd, or acknowledged by Redis) before it
   * resolves. With `dedupe`, the key is claimed for `ttlMs` in the same atomic step; when it is
   * already claimed, nothing is stored: 'duplicate'.
   */
  accept(msg: NewMessage, deliveries: readonly NewDelivery[], nowMs: number, dedupe?: { readonly key: string; readonly ttlMs: number }): Promise<AcceptResult>;
  /** Leases up to `limit` due deliveries of a route's destination to `owner` until `leaseUntil`. */
  claim(route: string, destination: string, owner: string, nowMs: number, leaseUntil: number, limit: number): Promise<StoredDelivery[]>;
  /** A 2xx arrived. `keepBody`: the message body stays (webhook inspect); else dropped once no delivery needs it. */
  delivered(ref: DeliveryRef, owner: string, nowMs: number, status: number, keepBody: boolean, then?: readonly NewDelivery[]): Promise<void>;
  /** Failed; due again at `nextAt`. Ignored when `owner` no longer holds the lease. */
  retry(ref: DeliveryRef, owner: string, nextAt: number, error: string, status: number | undefined): Promise<void>;
  /** Final: onto the dead-letter list (or dropped when `keep` is false). Ignored without the lease. */
  dead(ref: DeliveryRef, owner: string, nowMs: number, error: string, status: number | undefined, keep: boolean, then?: readonly NewDelivery[]): Promise<void>;
  /** Hands a leased delivery back untried (shutdown): due now, the attempt not counted. */
  release(ref: DeliveryRef, owner: string, nowMs: number): Promise<void>;
  /** When the destination's next delivery falls due (or a lease expires); undefined when none waits. */
  nextDueAt(route: string, destination: string): Promise<number | undefined>;
  /** Deliveries of a route's destination not yet finished (pending, waiting, delivering). */
  pending(route: string, destination: string): Promise<number>;
  /** Whether a delivery with this ordering key is unfinished: a new one would wait behind it. */
  busy(route: string, destination: string, orderKey: string): Promise<boolean>;
  /** Dead deliveries of a route's destination now. */
  deadCount(route: string, destination: string): Promise<number>;
  /** Dead-lettered deliveries of one kind, every route, oldest first. */
  listDead(kind: MessageKind): Promise<StoredDelivery[]>;
  /**
   * Makes a dead delivery (or, when `from` says so, a delivered one) due now with fresh attempts;
   * undefined when it is in no such state (or unknown).
   */
  replay(ref: DeliveryRef, nowMs: number, from?: readonly ReplayableState[]): Promise<StoredDelivery | undefined>;
  /** Cancels a delivery not yet finished; undefined when it is finished (or unknown). */
  cancel(ref: DeliveryRef, nowMs: number): Promise<StoredDelivery | undefined>;
  /** Every delivery of a message. */
  get(id: string): Promise<StoredDelivery[]>;
  /** Deliveries (to one destination, or to all), newest message first. */
  list(query: ListQuery): Promise<StoredDelivery[]>;
  /** Forgets expired de-duplication keys and old finished messages. */
  maintain(nowMs: number): Promise<void>;
}

/** Finished messages kept per route (delivered or cancelled) at least, for the admin views. */
export const RECENT_KEPT = 100;
/** Finished messages younger than this are kept too: a bulk replay reaches them. */
export const FINISHED_KEPT_MS = 86_400_000;

/** What the admin API calls a state: a delivery in flight or queued behind a key is still pending. */
export function publicState(state: DeliveryState): 'pending' | 'delivered' | 'dead' | 'cancelled' {
  return state === 'waiting' || state === 'delivering' ? 'pending' : state;
}
