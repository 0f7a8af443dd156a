import type { Logger } from 'pino';
import { backoffCeilingMs } from '../core/backoff.js';
import type { Clock } from '../core/clock.js';
import { GatehouseError, type ErrorCode } from '../core/errors.js';
import { findHeader } from '../core/headers.js';
import { parseRetryAfter } from '../core/limit-headers.js';
import type { Pace } from '../core/pace.js';
import type { UpstreamResult } from '../core/upstream.js';
import type { DeliveryStore, NewDelivery, StoredDelivery } from './store.js';

/**
 * The delivery engine's worker: delivers one route's destination (its upstream, a callback URL)
 * in the background, `concurrency` at a time: claim (lease) due deliveries, send each, then mark
 * it delivered, due again later, or dead. Deliveries of every process sharing the store are
 * worked on; a lease makes each one go out from one process at a time. Webhooks and the outbox
 * differ only in what they send (`send`) and which answers are final (`policy`).
 */

/** How a delivery ended this time. */
export type AttemptResult = 'delivered' | 'retried' | 'dead' | 'released';

/** What a try's answer means: done, try again later, or never (a final refusal). */
export type Verdict = 'delivered' | 'retry' | 'final';

export interface Sent {
  readonly result: UpstreamResult;
  /** The upstream (or callback URL) it went to, and the path sent: for the access log. */
  readonly upstream: string;
  readonly path: string;
}

export interface AttemptReport {
  readonly upstream: string;
  readonly path: string;
  readonly status: number;
  /** What went wrong, as text (kept as lastError), or undefined for a delivery. */
  readonly error: string | undefined;
  /** The SPEC §4 code of a failure without an answer (bad_gateway, upstream_timeout, circuit_open ...). */
  readonly code: ErrorCode | undefined;
  readonly result: AttemptResult;
  readonly durationMs: number;
  /** Wall-clock ms from acceptance to delivery, for a delivered one. */
  readonly lagMs: number | undefined;
  /** The attempt's trace ('' when tracing is off). */
  readonly traceId: string;
}

/** What the worker tells telemetry; the CLIENT span and client metrics come from the upstream dispatch. */
export interface WorkerObserver {
  attempted(d: StoredDelivery, report: AttemptReport): void;
  /** Unfinished deliveries of the worker's destination, counted now (and dead ones, when asked for). */
  counted(route: string, destination: string, pending: number, dead: number | undefined): void;
}

export interface DeliveryPolicy {
  /** Tries in total (webhooks' `delivery.attempts`); undefined: until `expiresAt` (the outbox's maxAge). */
  readonly attempts: number | undefined;
  readonly backoff: { readonly base: number; readonly max: number };
  /** Keep dead deliveries for replay (else dropped). */
  readonly deadLetter: boolean;
  /** Keep the message body once delivered (webhook `inspect`). */
  readonly keepBody: boolean;
  /** What an answer (or its absence) means. */
  verdict(result: UpstreamResult): Verdict;
  /** Deliveries to add when one finishes, in the same atomic step (the outbox's callback). */
  finished?(d: StoredDelivery, outcome: 'delivered' | 'dead', result: UpstreamResult | undefined, error: string | undefined): readonly NewDelivery[] | undefined;
}

export interface DeliveryWorker {
  start(): void;
  /** Something became due (an acceptance, a replay): look now instead of at the next poll. */
  notify(): void;
  /** Stops claiming; in-flight deliveries get `graceMs` to finish, then are handed back to the store. */
  stop(graceMs: number): Promise<void>;
}

export interface DeliveryWorkerOptions {
  readonly route: string;
  readonly destination: string;
  readonly concurrency: number;
  readonly policy: DeliveryPolicy;
  readonly store: () => DeliveryStore;
  /** This process's lease owner id. */
  readonly owner: string;
  /** Sends one try; undefined when there is nowhere to send it now (the route is gone): handed back. */
  readonly send: (d: StoredDelivery, signal: AbortSignal) => Promise<Sent> | undefined;
  /** Bounds one try: the lease outlasts it. */
  readonly timeoutMs: () => number;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly observer: WorkerObserver;
  readonly logger: Logger;
  /** Also count dead deliveries for the gauge (the outbox's `gatehouse_outbox_messages{status="dead"}`). */
  readonly countDead?: boolean;
  /**
   * The destination's pace (a webhook destination's `rate`): a delivery is claimed only with a
   * token, so one waiting for its turn is neither tried nor counted as an attempt.
   */
  readonly pace?: Pace | undefined;
}

/** How often a worker looks for work it was not told about (other replicas, expired leases). */
const POLL_MS = 1_000;
const MAINTAIN_EVERY_MS = 60_000;

/**
 * Exponential back-off with equal jitter: after the n-th failed attempt, wait between half and
 * all of min(max, base * 2^(n-1)). Never zero, unlike full jitter: an upstream that just failed is
 * not hit again at once.
 */
export function retryDelayMs(failedAttempts: number, baseMs: number, maxMs: number, rand: () => number): number {
  const ceiling = backoffCeilingMs(baseMs, maxMs, failedAttempts);
  return Math.round(ceiling / 2 + (rand() * ceiling) / 2);
}

/**
 * How long a claimed delivery stays leased to this process: the attempt's timeout twice over plus
 * a margin, so a live worker always finishes first and a dead one's deliveries come back soon.
 */
export const leaseMs = (timeoutMs: number) => timeoutMs * 2 + 1_000;

/** The access log's `error`: a code of gatehouse's own for a try without an answer. */
export function failureCode(result: UpstreamResult): ErrorCode | undefined {
  const { failure } = result;
  if (failure === undefined) return undefined;
  if (failure instanceof GatehouseError) return failure.code;
  return failure.kind === 'timeout' ? 'upstream_timeout' : 'bad_gateway';
}

export function createDeliveryWorker(o: DeliveryWorkerOptions): DeliveryWorker {
  const { route, destination, policy, owner, clock, observer, logger } = o;
  const ref = (d: StoredDelivery) => ({ id: d.id, destination });
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
      const free = o.concurrency - inFlight.size;
      let full = free <= 0;
      let paceWaitMs = 0;
      if (free > 0 && running) {
        const [tokens, waitMs] = takeTokens(free, now);
        paceWaitMs = waitMs;
        if (tokens > 0) {
          const batch = await store.claim(route, destination, owner, now, now + leaseMs(o.timeoutMs()), tokens);
          for (const d of batch) begin(d, store);
          if (o.pace !== undefined) for (let i = batch.length; i < tokens; i++) o.pace.refund(now); // fewer were due than tokens taken
          full = batch.length === free; // maybe more is due: look again once a slot frees up
        }
      }
      await count(store, now);
      if (paceWaitMs > 0) {
        // out of tokens: look again when the next one comes (if something is due, it goes then)
        delay = Math.min(POLL_MS, paceWaitMs);
      } else if (!full) {
        const next = await store.nextDueAt(route, destination);
        if (next !== undefined) delay = Math.min(POLL_MS, next - clock.now());
      }
      if (storeDown) logger.info({ route, destination }, 'delivery store answers again; delivery resumed');
      storeDown = false;
    } catch (err) {
      if (!storeDown) logger.warn({ route, destination, err: (err as Error).message }, 'delivery store unavailable; delivery paused until it answers');
      storeDown = true;
      // messages wait all the more while the store cannot take writes: the gauge still counts them
      await count(o.store(), clock.now(), true).catch(() => undefined);
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

  /** Up to `wanted` tokens of the pace (all of them when unpaced), and the wait for the next when it ran out. */
  function takeTokens(wanted: number, now: number): [number, number] {
    if (o.pace === undefined) return [wanted, 0];
    let tokens = 0;
    while (tokens < wanted) {
      const waitMs = o.pace.take(now);
      if (waitMs > 0) return [tokens, waitMs];
      tokens++;
    }
    return [tokens, 0];
  }

  /** The gauges: at most once a second under load, and whenever the worker falls idle. */
  async function count(store: DeliveryStore, now: number, force = false): Promise<void> {
    if (!force && now < nextGaugeAt && inFlight.size > 0) return;
    nextGaugeAt = now + POLL_MS;
    const [pending, dead] = await Promise.all([store.pending(route, destination), o.countDead === true ? store.deadCount(route, destination) : undefined]);
    observer.counted(route, destination, pending, dead);
  }

  function begin(d: StoredDelivery, store: DeliveryStore): void {
    const abort = new AbortController();
    const key = d.id;
    const done = deliver(d, store, abort.signal)
      .catch((err: unknown) => {
        // The store failed to record the outcome: the lease runs out and the delivery goes again.
        logger.warn({ route, destination, id: d.id, err: (err as Error).message }, 'could not record a delivery outcome');
      })
      .finally(() => {
        inFlight.delete(key);
        if (running) api.notify();
      });
    inFlight.set(key, { abort, done });
  }

  async function deliver(d: StoredDelivery, store: DeliveryStore, signal: AbortSignal): Promise<void> {
    const startedMs = clock.monotonic();
    // the outbox's maxAge passed while it waited (behind its key, or while gatehouse was down)
    if (d.expiresAt !== undefined && clock.now() >= d.expiresAt) {
      const error = 'maxAge passed before it could be sent again';
      await settleDead(d, store, error, undefined, undefined);
      observer.attempted(d, { upstream: '', path: d.path, status: 0, error, code: undefined, result: 'dead', durationMs: 0, lagMs: undefined, traceId: '' });
      return;
    }
    const sending = o.send(d, signal);
    if (sending === undefined) {
      await store.release(ref(d), owner, clock.now());
      return;
    }
    const { result, upstream, path } = await sending;
    const report = (outcome: AttemptResult, error: string | undefined, lagMs?: number): AttemptReport => ({
      upstream,
      path,
      status: result.status,
      error,
      code: outcome === 'released' ? undefined : failureCode(result),
      result: outcome,
      durationMs: clock.monotonic() - startedMs,
      lagMs,
      traceId: result.traceId,
    });
    if (signal.aborted) {
      // gatehouse is stopping: the delivery goes back to the store, untried
      await store.release(ref(d), owner, clock.now());
      observer.attempted(d, report('released', 'stopping'));
      return;
    }
    const verdict = policy.verdict(result);
    if (verdict === 'delivered') {
      const now = clock.now();
      await store.delivered(ref(d), owner, now, result.status, policy.keepBody, policy.finished?.(d, 'delivered', result, undefined));
      observer.attempted(d, report('delivered', undefined, now - d.createdAt));
      return;
    }
    const error = result.failure !== undefined ? result.failure.message : `HTTP ${result.status}`;
    observer.attempted(d, report(await fail(d, store, error, result, verdict === 'final'), error));
  }

  /** A failed attempt: due again after the back-off (or what the upstream asked), or dead. */
  async function fail(d: StoredDelivery, store: DeliveryStore, error: string, result: UpstreamResult, final: boolean): Promise<'retried' | 'dead'> {
    const now = clock.now();
    const status = result.status === 0 ? undefined : result.status;
    if (!final && (policy.attempts === undefined || d.attempts < policy.attempts)) {
      let delay = retryDelayMs(d.attempts, policy.backoff.base, policy.backoff.max, o.rand);
      const hint = retryAfterMs(result, now);
      if (hint !== undefined) delay = policy.attempts === undefined ? Math.max(delay, hint) : Math.min(Math.max(delay, hint), policy.backoff.max);
      if (d.expiresAt === undefined || now + delay < d.expiresAt) {
        await store.retry(ref(d), owner, now + delay, error, status);
        return 'retried';
      }
      error = `${error}; maxAge would pass before the next try`;
    }
    await settleDead(d, store, error, status, result);
    return 'dead';
  }

  async function settleDead(d: StoredDelivery, store: DeliveryStore, error: string, status: number | undefined, result: UpstreamResult | undefined): Promise<void> {
    await store.dead(ref(d), owner, clock.now(), error, status, policy.deadLetter, policy.finished?.(d, 'dead', result, error));
    logger.error(
      { route, destination, id: d.id, attempts: d.attempts, status, lastError: error, deadLetter: policy.deadLetter },
      policy.deadLetter ? 'delivery moved to the dead-letter list' : 'delivery dropped after its last attempt (deadLetter: false)',
    );
  }

  const api: DeliveryWorker = {
    start() {
      if (running) return;
      running = true;
      schedule(0);
    },
    notify() {
      // many acceptances in one turn of the event loop make one look at the store
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

/** `Retry-After` of an answer (seconds or an HTTP-date), in ms from now. */
const retryAfterMs = (result: UpstreamResult, nowMs: number): number | undefined => parseRetryAfter(findHeader(result.headers, 'retry-after'), nowMs);
