import type { Logger } from 'pino';
import type { WebhookConfig } from '../config/schema.js';
import { backoffCeilingMs } from '../core/backoff.js';
import { GatehouseError, type ErrorCode } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { findHeader } from '../core/headers.js';
import { ATTR } from '../core/names.js';
import type { UpstreamClient } from '../core/upstream.js';
import type { StoredEvent, WebhookStore } from './store.js';

/** Where the route's events go, from the plan that is live now (a reload may change it). */
export interface DeliveryTarget {
  /** The route's upstream, reached the way proxied traffic reaches it (breaker, credentials, TLS, span). */
  readonly upstream: UpstreamClient;
  /** The route's path rewrite. */
  readonly rewrite: (path: string) => string;
  /** `rewrite.host`: undefined = the endpoint's authority, 'preserve' = the provider's Host. */
  readonly host: string | undefined;
  /** The route `timeout`: bounds each delivery attempt. */
  readonly timeoutMs: number;
}

export type AttemptResult = 'delivered' | 'retried' | 'dead' | 'released';

export interface AttemptReport {
  readonly upstream: string;
  /** The path delivered to (after the route's rewrite). */
  readonly path: string;
  readonly status: number;
  /** What went wrong, as text (kept as the event's lastError), or undefined for a 2xx. */
  readonly error: string | undefined;
  /**
   * The SPEC §4 code of a failure gatehouse saw (no answer: bad_gateway, upstream_timeout; a
   * credentials failure: its code); undefined when the upstream answered, as in the access log.
   */
  readonly code: ErrorCode | undefined;
  readonly result: AttemptResult;
  readonly durationMs: number;
  /** Wall-clock ms from receipt to delivery, for a delivered event. */
  readonly lagMs: number | undefined;
  /** The attempt's trace ('' when tracing is off). */
  readonly traceId: string;
}

/**
 * What delivery tells telemetry (implemented in src/telemetry/webhook-observer.ts). The attempt's
 * CLIENT span, its client-duration metric and the breaker's record come from the upstream
 * dispatch, as for proxied requests.
 */
export interface DeliveryObserver {
  attempted(ev: StoredEvent, report: AttemptReport): void;
  pending(route: string, count: number): void;
}

export interface DeliveryWorker {
  start(): void;
  /** Something became due (an intake, a replay): look now instead of at the next poll. */
  notify(): void;
  /** Stops claiming; in-flight deliveries get `graceMs` to finish, then are handed back to the store. */
  stop(graceMs: number): Promise<void>;
}

export interface DeliveryWorkerOptions {
  readonly route: string;
  readonly cfg: WebhookConfig;
  readonly store: () => WebhookStore;
  /** This process's lease owner id. */
  readonly owner: string;
  readonly target: () => DeliveryTarget | undefined;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly observer: DeliveryObserver;
  readonly logger: Logger;
}

/** How often a worker looks for work it was not told about (other replicas, expired leases). */
const POLL_MS = 1_000;
const MAINTAIN_EVERY_MS = 60_000;

/**
 * Exponential back-off with equal jitter: after the n-th failed attempt, wait between half and
 * all of min(max, base * 2^(n-1)). Never zero, unlike full jitter: a store that just failed is
 * not hit again at once.
 */
export function retryDelayMs(failedAttempts: number, baseMs: number, maxMs: number, rand: () => number): number {
  const ceiling = backoffCeilingMs(baseMs, maxMs, failedAttempts);
  return Math.round(ceiling / 2 + (rand() * ceiling) / 2);
}

/**
 * How long a claimed event stays leased to this process: the attempt's timeout twice over plus
 * a margin, so a live worker always finishes first and a dead one's events come back soon.
 */
export const leaseMs = (timeoutMs: number) => timeoutMs * 2 + 1_000;


/**
 * Delivers one route's stored events to its upstream in the background, `delivery.concurrency`
 * at a time: claim (lease) due events, POST each, then mark it delivered, due again later, or
 * dead. Events of every process sharing the store are worked on; a lease makes each one go out
 * from one process at a time.
 */
export function createDeliveryWorker(o: DeliveryWorkerOptions): DeliveryWorker {
  const { route, cfg, owner, clock, observer, logger } = o;
  const { attempts: maxAttempts, backoff, deadLetter, concurrency } = cfg.delivery;
  const inFlight = new Map<string, { readonly abort: AbortController; readonly done: Promise<void> }>();
  let running = false;
  let pumping = false;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let nextMaintainAt = 0;
  let nextGaugeAt = 0;
  let storeDown = false;
  let notified = false;

  const schedule = (delayMs: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => void pump(), Math.max(0, delayMs));
  };

  async function pump(): Promise<void> {
    if (!running) return;
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    let delay = POLL_MS;
    try {
      const store = o.store();
      const now = clock.now();
      if (now >= nextMaintainAt) {
        nextMaintainAt = now + MAINTAIN_EVERY_MS;
        await store.maintain(now);
      }
      const target = o.target();
      const free = concurrency - inFlight.size;
      let full = free <= 0;
      if (free > 0 && target !== undefined && running) {
        const batch = await store.claim(route, owner, now, now + leaseMs(target.timeoutMs), free);
        for (const ev of batch) begin(ev, store);
        full = batch.length === free; // maybe more is due: look again once a slot frees up
      }
      await countPending(store, now);
      if (!full) {
        const next = await store.nextDueAt(route);
        if (next !== undefined) delay = Math.min(POLL_MS, next - clock.now());
      }
      if (storeDown) logger.info({ route }, 'webhook store answers again; delivery resumed');
      storeDown = false;
    } catch (err) {
      if (!storeDown) logger.warn({ route, err: (err as Error).message }, 'webhook store unavailable; delivery paused until it answers');
      storeDown = true;
      // events wait all the more while the store cannot take writes: the gauge still counts them
      await countPending(o.store(), clock.now(), true).catch(() => undefined);
    } finally {
      pumping = false;
    }
    if (!running) return;
    if (again) {
      again = false;
      delay = 0;
    }
    schedule(delay);
  }

  /** The pending gauge: at most once a second under load, and whenever the worker falls idle. */
  async function countPending(store: WebhookStore, now: number, force = false): Promise<void> {
    if (!force && now < nextGaugeAt && inFlight.size > 0) return;
    nextGaugeAt = now + POLL_MS;
    observer.pending(route, await store.pending(route));
  }

  function begin(ev: StoredEvent, store: WebhookStore): void {
    const abort = new AbortController();
    const done = deliver(ev, store, abort.signal)
      .catch((err: unknown) => {
        // The store failed to record the outcome: the lease runs out and the event goes again.
        logger.warn({ route, id: ev.id, err: (err as Error).message }, 'could not record a webhook delivery outcome');
      })
      .finally(() => {
        inFlight.delete(ev.id);
        if (running) api.notify();
      });
    inFlight.set(ev.id, { abort, done });
  }

  async function deliver(ev: StoredEvent, store: WebhookStore, signal: AbortSignal): Promise<void> {
    const target = o.target();
    if (target === undefined) {
      await store.release(ev.id, owner, clock.now());
      return;
    }
    const q = ev.path.indexOf('?');
    const path = q < 0 ? target.rewrite(ev.path) : target.rewrite(ev.path.slice(0, q)) + ev.path.slice(q);
    const startedMs = clock.monotonic();
    const result = await target.upstream.call({
      route,
      method: ev.method,
      target: path,
      headers: [...ev.headers, 'gatehouse-webhook-id', ev.id, 'gatehouse-webhook-event-id', ev.eventId, 'gatehouse-webhook-attempt', String(ev.attempts)],
      body: ev.body,
      host: target.host === 'preserve' ? findHeader(ev.headers, 'x-forwarded-host') : target.host,
      timeoutMs: target.timeoutMs,
      signal,
      resends: ev.attempts - 1,
      link: ev.trace,
      attributes: { [ATTR.webhookId]: ev.id, [ATTR.webhookEventId]: ev.eventId, [ATTR.webhookAttempt]: ev.attempts },
      maxBodyBytes: 0,
    });
    const { failure } = result;
    // the access log's `error`: a code of gatehouse's own for an attempt without an answer
    const code = failure === undefined ? undefined : failure instanceof GatehouseError ? failure.code : failure.kind === 'timeout' ? 'upstream_timeout' : 'bad_gateway';
    const report = (outcome: AttemptResult, error: string | undefined, lagMs?: number): AttemptReport => ({
      upstream: target.upstream.name,
      path,
      status: result.status,
      error,
      code: outcome === 'released' ? undefined : code,
      result: outcome,
      durationMs: clock.monotonic() - startedMs,
      lagMs,
      traceId: result.traceId,
    });
    if (signal.aborted) {
      // gatehouse is stopping: the event goes back to the store, untried
      await store.release(ev.id, owner, clock.now());
      observer.attempted(ev, report('released', 'stopping'));
      return;
    }
    const error = failure !== undefined ? failure.message : result.status < 200 || result.status > 299 ? `HTTP ${result.status}` : undefined;
    if (error === undefined) {
      const now = clock.now();
      await store.delivered(ev.id, now, cfg.inspect);
      observer.attempted(ev, report('delivered', undefined, now - ev.receivedAt));
      return;
    }
    observer.attempted(ev, report(await fail(ev, store, error, result.status), error));
  }

  /** A failed attempt: due again after the back-off, or dead once it was the last one. */
  async function fail(ev: StoredEvent, store: WebhookStore, error: string, status: number): Promise<'retried' | 'dead'> {
    const now = clock.now();
    if (ev.attempts < maxAttempts) {
      await store.retry(ev.id, owner, now + retryDelayMs(ev.attempts, backoff.base, backoff.max, o.rand), error);
      return 'retried';
    }
    await store.dead(ev.id, owner, now, error, deadLetter);
    logger.error(
      { route, id: ev.id, eventId: ev.eventId, attempts: ev.attempts, status, lastError: error, deadLetter },
      deadLetter ? 'webhook event moved to the dead-letter list' : 'webhook event dropped after its last attempt (deadLetter: false)',
    );
    return 'dead';
  }

  const api: DeliveryWorker = {
    start() {
      if (running) return;
      running = true;
      schedule(0);
    },
    notify() {
      // many intakes in one turn of the event loop make one look at the store
      if (!running || notified) return;
      notified = true;
      setImmediate(() => {
        notified = false;
        void pump();
      });
    },
    async stop(graceMs) {
      running = false;
      clearTimeout(timer);
      if (inFlight.size === 0) return;
      let graceTimer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...inFlight.values()].map((f) => f.done)),
        new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(graceTimer);
      const left = [...inFlight.values()];
      for (const f of left) f.abort.abort();
      await Promise.allSettled(left.map((f) => f.done));
    },
  };
  return api;
}

