import type { Redis } from 'ioredis';
import { fingerprint } from '../config/fingerprint.js';
import type { BudgetConfig, ConcurrencyConfig, Config } from '../config/schema.js';
import type { GateRequest, Ticket, UpstreamGate } from '../core/budget.js';
import type { Clock } from '../core/clock.js';
import { GatehouseError } from '../core/errors.js';
import { parseRetryAfter, readAnnouncement, scanLimitHeaders } from '../core/limit-headers.js';
import { ATTR, EVENTS } from '../core/names.js';
import { createWaitQueue, type AttemptOutcome, type WaitQueue } from '../core/wait-queue.js';
import type { StoreRegistry } from '../stores/stores.js';
import { AdaptiveLimit, fixedLimit, type ConcurrencyLimit, type SampleKind } from './adaptive.js';
import { createMemoryMirrorStore, type BucketShape, type MirrorStore, type Settlement } from './mirror.js';
import { createRedisMirrorStore, type MirrorStoreObserver } from './redis.js';
import { QueryCosts, queryKeyOf, readCallLimit, readCost, TAIL_BYTES } from './shopify.js';

/**
 * Provider budgets (SPEC §12): per upstream, a mirror of what the provider still allows (per shop
 * or account), and the upstream's concurrency limit. Each attempt is admitted by the upstream's
 * gate before it is sent — at once, or after waiting in the upstream's priority queue — and
 * settled with the provider's answer, which corrects the mirror. An upstream with neither
 * `budget` nor `concurrency` gets no gate.
 */

export type BudgetKind = BudgetConfig['kind'];

/** Telemetry's view of budgets; src/telemetry/budget-observer.ts implements it. */
export interface BudgetObserver extends MirrorStoreObserver {
  /** A request waited in an upstream's queue and left it: admitted, refused, or its client left. */
  waited(upstream: string, seconds: number, result: 'admitted' | 'rejected' | 'cancelled'): void;
  /** A provider throttle: absorbed and retried by gatehouse, or returned to the store. */
  throttled(upstream: string, outcome: 'retried' | 'returned'): void;
}

export interface BudgetDeps {
  readonly clock: Clock;
  readonly stores: StoreRegistry;
  readonly observer: BudgetObserver;
}

export interface KeyView {
  readonly available: number | null;
  readonly capacity: number | null;
  readonly restoreRate: number | null;
  readonly waiting: number;
  readonly concurrencyLimit: number | null;
  readonly inFlight: number;
  readonly pausedForMs: number;
}

export interface BudgetView {
  readonly kind: BudgetKind | null;
  readonly store: string;
  readonly concurrencyLimit: number | null;
  readonly inFlight: number;
  readonly keys: Record<string, KeyView>;
}

/** One upstream's gate, with what admin and metrics read of it. */
export interface UpstreamBudget extends UpstreamGate {
  readonly upstream: string;
  readonly fingerprint: string;
  view(): BudgetView;
  /** The least any key has left (the gauge); undefined without a bucket or before any request. */
  available(): number | undefined;
  concurrencyLimit(): number | undefined;
}

export interface BudgetRegistry {
  /** By upstream name; only upstreams with `budget` or `concurrency`. */
  readonly budgets: ReadonlyMap<string, UpstreamBudget>;
  /** The mirror stores, by store name: kept by the next plan while their config holds. */
  readonly stores: ReadonlyMap<string, StoreRuntime>;
  /** `GET /admin/budgets`. */
  view(): { readonly budgets: Record<string, BudgetView> };
  close(): void;
}

export interface StoreRuntime {
  readonly fingerprint: string;
  readonly store: MirrorStore;
}

export function compileBudgets(config: Config, deps: BudgetDeps, previous?: BudgetRegistry): BudgetRegistry {
  const budgets = new Map<string, UpstreamBudget>();
  const stores = new Map<string, StoreRuntime>();
  const storeOf = (name: string | undefined): StoreRuntime => {
    const cfg = name === undefined ? undefined : config.stores[name];
    const id = cfg?.type === 'redis' ? name! : '(memory)';
    let runtime = stores.get(id);
    if (runtime !== undefined) return runtime;
    const print = cfg?.type === 'redis' ? fingerprint(cfg) : id;
    const old = previous?.stores.get(id);
    runtime = old !== undefined && old.fingerprint === print ? old : { fingerprint: print, store: id === '(memory)' ? memoryStore(deps.clock) : redisStore(id, deps) };
    stores.set(id, runtime);
    return runtime;
  };
  for (const [name, up] of Object.entries(config.upstreams)) {
    if (up.budget === undefined && up.concurrency === undefined) continue;
    const store = up.budget === undefined ? undefined : storeOf(up.budget.store);
    const print = fingerprint({ budget: up.budget, concurrency: up.concurrency, store: store?.fingerprint });
    const old = previous?.budgets.get(name);
    budgets.set(name, old !== undefined && old.fingerprint === print ? old : createUpstreamBudget(name, up.budget, up.concurrency, print, store?.store, deps));
  }
  const registry: BudgetRegistry = {
    budgets,
    stores,
    view() {
      const out: Record<string, BudgetView> = {};
      for (const [name, b] of budgets) out[name] = b.view();
      return { budgets: out };
    },
    close() {
      for (const s of stores.values()) s.store.close?.();
    },
  };
  return registry;
}

function memoryStore(clock: Clock): MirrorStore {
  return createMemoryMirrorStore('memory', () => clock.monotonic());
}

function redisStore(name: string, deps: BudgetDeps): MirrorStore {
  let client: Redis | undefined;
  const current = (): Redis => {
    if (client === undefined || client.status === 'end') client = deps.stores.redis(name);
    return client;
  };
  try {
    current();
  } catch {
    // a store added by this reload: the registry adopts it once the new plan is in place
  }
  return createRedisMirrorStore(name, current, createMemoryMirrorStore(`${name} (fallback)`, () => deps.clock.monotonic()), deps.observer);
}

/** Stripe's reasons that say the concurrency limiter fired (docs.stripe.com/rate-limits). */
const CONCURRENCY_REASONS = new Set(['global-concurrency', 'endpoint-concurrency']);
const STRIPE_BACKOFF_BASE_MS = 500;
const STRIPE_BACKOFF_MAX_MS = 8_000;
/** Waiting for a free slot: woken by the release, this is only the fallback timer. */
const SLOT_WAIT_MS = 1_000;
/** A Shopify 429 without Retry-After: wait this long. */
const DEFAULT_429_PAUSE_MS = 1_000;

const SHAPES: Record<BudgetKind, BucketShape> = {
  'shopify-graphql': { capacity: 1000, rate: 50 },
  'shopify-rest': { capacity: 40, rate: 2 },
  stripe: { capacity: 0, rate: 0 },
  headers: { capacity: 0, rate: 0 },
};

type Why = 'budget' | 'concurrency';

/** What a request reserves: a fixed cost, or its query's (looked up at each try). */
interface Query {
  readonly key: string | undefined;
  readonly fixed: number | undefined;
}
const ONE_CALL: Query = { key: undefined, fixed: 1 };
const FREE: Query = { key: undefined, fixed: 0 };

function createUpstreamBudget(
  upstream: string,
  cfg: BudgetConfig | undefined,
  conc: ConcurrencyConfig | undefined,
  print: string,
  store: MirrorStore | undefined,
  deps: BudgetDeps,
): UpstreamBudget {
  const { clock, observer } = deps;
  const kind = cfg?.kind;
  const shape: BucketShape =
    kind === undefined ? SHAPES.headers : { capacity: cfg!.initial.capacity ?? SHAPES[kind].capacity, rate: cfg!.initial.restoreRate ?? SHAPES[kind].rate };
  const hasBucket = shape.capacity > 0;
  const prefix = `b:${upstream}:`;
  const keyOf = compileKey(cfg?.key ?? 'global');
  const costs = new QueryCosts();
  // stripe says when its concurrency limiter fires: without a concurrency block it gets an adaptive one
  const limitCfg = conc ?? (kind === 'stripe' ? { limit: 'adaptive' as const, min: 1, max: 200, initial: undefined, onExceed: 'queue' as const, maxWait: 10_000 } : undefined);
  const limiter: ConcurrencyLimit | undefined =
    limitCfg === undefined
      ? undefined
      : limitCfg.limit === 'adaptive'
        ? new AdaptiveLimit({ min: limitCfg.min, max: limitCfg.max, initial: limitCfg.initial ?? Math.min(20, limitCfg.max) })
        : fixedLimit(limitCfg.limit);
  const onExceed = cfg?.onExceed ?? limitCfg!.onExceed;
  const maxWaitMs = cfg?.maxWait ?? limitCfg!.maxWait;
  const queue: WaitQueue = createWaitQueue({ maxQueue: cfg?.maxQueue ?? 1000, maxWaitMs });
  const waiting = new Map<string, number>();
  const backoffs = new Map<string, number>();
  const maxInspect = cfg?.maxInspect ?? 0;

  const refusal = (why: Why, waitMs: number, detail: string): GatehouseError =>
    why === 'concurrency'
      ? new GatehouseError('overloaded', `upstream '${upstream}' has ${limiter!.limit} requests in flight (its concurrency limit)${detail}`)
      : new GatehouseError('rate_limited', `the budget of upstream '${upstream}' cannot afford the request now${detail}; retry in ${Math.max(1, Math.ceil(waitMs / 1000))}s`, {
          'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))),
        });

  /** Whether requests reserve points, and how they are known: by their query (shopify-graphql) or as one call (shopify-rest). */
  function queryOf(req: GateRequest): Query {
    if (kind === 'shopify-rest') return ONE_CALL;
    if (kind !== 'shopify-graphql' || req.method !== 'POST') return FREE;
    return { key: queryKeyOf(req.body), fixed: undefined };
  }

  /** What the request reserves now: its query's last requested cost (learnt while it waited, too), else defaultCost. */
  const costOf = (q: Query): number => q.fixed ?? costs.get(q.key) ?? cfg!.defaultCost;

  /** One try at the head of the lane: a slot and the points, or how long to wait. */
  function tryTake(req: GateRequest, key: string, query: Query, said: { why: Why }): AttemptOutcome<Ticket> | Promise<AttemptOutcome<Ticket>> {
    if (limiter !== undefined && limiter.inflight >= limiter.limit) {
      said.why = 'concurrency';
      return { waitMs: SLOT_WAIT_MS };
    }
    const cost = costOf(query);
    const granted = (id: string | undefined): AttemptOutcome<Ticket> => {
      if (limiter !== undefined && !limiter.tryAcquire()) {
        said.why = 'concurrency';
        if (store !== undefined && cost > 0) void store.settle(prefix + key, { id, reserved: cost, charged: 0 }, shape);
        return { waitMs: SLOT_WAIT_MS };
      }
      return { done: new BudgetTicket(req, key, cost, query.key, id) };
    };
    if (store === undefined) return granted(undefined);
    const r = store.reserve(prefix + key, cost, shape);
    const judge = (res: Awaited<typeof r>): AttemptOutcome<Ticket> => {
      if (res.ok) return granted(res.id);
      said.why = 'budget';
      return { waitMs: res.waitMs };
    };
    return r instanceof Promise ? r.then(judge) : judge(r);
  }

  function admit(req: GateRequest): Ticket | GatehouseError | Promise<Ticket | GatehouseError | undefined> {
    const key = keyOf(req);
    const query = queryOf(req);
    const said: { why: Why } = { why: 'budget' };
    const settled = (o: AttemptOutcome<Ticket>): Ticket | GatehouseError | Promise<Ticket | GatehouseError | undefined> => {
      if ('done' in o) {
        if (req.resend) absorbed(req, true);
        return o.done;
      }
      return wait(req, key, query, said, o.waitMs);
    };
    if (queue.has(key)) return wait(req, key, query, said, 0); // no overtaking those already waiting
    const first = tryTake(req, key, query, said);
    return first instanceof Promise ? first.then(settled) : settled(first);
  }

  function absorbed(req: GateRequest, retried: boolean): void {
    observer.throttled(upstream, retried ? 'retried' : 'returned');
    req.ex?.event(EVENTS.budgetThrottled, { [ATTR.gatehouseUpstream]: upstream, [ATTR.budgetOutcome]: retried ? 'retried' : 'returned' });
  }

  function wait(req: GateRequest, key: string, query: Query, said: { why: Why }, waitMs: number): GatehouseError | Promise<Ticket | GatehouseError | undefined> {
    const left = Math.min(maxWaitMs, req.deadlineAt - clock.monotonic());
    const refuse = (detail: string, ms: number): GatehouseError => {
      if (req.resend) absorbed(req, false);
      return refusal(said.why, ms, detail);
    };
    if (onExceed === 'reject') return refuse('', waitMs);
    if (queue.isFull()) return refuse(` (${queue.size} requests already wait)`, waitMs);
    if (said.why === 'budget' && waitMs > left) return refuse(', and the wait is longer than its maxWait or the route timeout allows', waitMs);
    const ex = req.ex;
    ex?.event(EVENTS.budgetQueued, { [ATTR.gatehouseUpstream]: upstream, [ATTR.budgetWaitEstimate]: waitMs, [ATTR.budgetReason]: said.why });
    waiting.set(key, (waiting.get(key) ?? 0) + 1);
    const started = clock.monotonic();
    return queue
      .wait<Ticket | GatehouseError>(key, {
        priority: req.priority,
        signal: req.signal,
        firstWaitMs: waitMs,
        attempt: () => tryTake(req, key, query, said),
        expired: (lastWaitMs) => refuse(` within its maxWait of ${maxWaitMs}ms`, lastWaitMs),
        abandoned: (t) => {
          if (!(t instanceof GatehouseError)) t.fail(false, false);
        },
      })
      .then((final) => {
        const n = (waiting.get(key) ?? 1) - 1;
        if (n <= 0) waiting.delete(key);
        else waiting.set(key, n);
        const seconds = (clock.monotonic() - started) / 1000;
        observer.waited(upstream, seconds, final === undefined ? 'cancelled' : final instanceof GatehouseError ? 'rejected' : 'admitted');
        ex?.event(EVENTS.budgetReleased, { [ATTR.gatehouseUpstream]: upstream, [ATTR.budgetWaited]: Math.round(seconds * 1000) });
        if (final !== undefined && !(final instanceof GatehouseError) && req.resend) absorbed(req, true);
        return final;
      });
  }

  /** Stripe's rate limiter fired for `key`: the pause doubles while it keeps firing. */
  function stripeBackoff(key: string): number {
    const next = Math.min(STRIPE_BACKOFF_MAX_MS, (backoffs.get(key) ?? STRIPE_BACKOFF_BASE_MS / 2) * 2);
    backoffs.set(key, next);
    return next;
  }

  class BudgetTicket implements Ticket {
    private open = true;
    private readonly startedAt = clock.monotonic();
    private readonly inflightAtStart = limiter?.inflight ?? 0;

    constructor(
      private readonly req: GateRequest,
      private readonly key: string,
      private readonly cost: number,
      private readonly queryKey: string | undefined,
      private readonly id: string | undefined,
    ) {}

    inspect(statusCode: number, rawHeaders: readonly Buffer[]): number {
      if (kind === 'shopify-graphql') {
        const encoding = findHeader(rawHeaders, 'content-encoding');
        return encoding === undefined || encoding.toLowerCase() === 'identity' ? maxInspect : 0;
      }
      return kind === 'shopify-rest' && statusCode === 429 ? TAIL_BYTES : 0;
    }

    answer(statusCode: number, rawHeaders: readonly Buffer[], body: Buffer | undefined, whole: boolean): boolean {
      if (!this.open) return false;
      this.open = false;
      const { key, cost } = this;
      let charged = cost;
      let reset: Settlement['reset'];
      let pauseMs: number | undefined;
      let throttled = false;
      let sample: SampleKind = statusCode === 429 || statusCode === 503 ? 'overload' : 'ok';
      let retryCost = cost;
      if (kind === 'shopify-graphql') {
        const report = body === undefined ? undefined : readCost(body, whole);
        if (report?.requested !== undefined) {
          costs.set(this.queryKey, report.requested);
          retryCost = report.requested;
        }
        throttled = report?.throttled === true || statusCode === 429;
        if (throttled) charged = 0;
        else if (report?.actual !== undefined) charged = report.actual;
        reset = report?.bucket === undefined ? undefined : { capacity: report.bucket.capacity, available: report.bucket.available, rate: report.bucket.restoreRate };
        if (statusCode === 429 && reset === undefined) pauseMs = retryAfterMs(rawHeaders) ?? DEFAULT_429_PAUSE_MS;
        if (throttled) sample = 'ok'; // the budget's business, not a sign of overload
      } else if (kind === 'shopify-rest') {
        const limit = readCallLimit(findHeader(rawHeaders, 'x-shopify-shop-api-call-limit'));
        if (limit !== undefined) reset = { capacity: limit.size, available: limit.size - limit.used, rate: shape.rate };
        if (statusCode === 429) {
          throttled = true;
          charged = 0;
          pauseMs = retryAfterMs(rawHeaders) ?? DEFAULT_429_PAUSE_MS;
          sample = 'ok';
        }
      } else if (kind === 'stripe') {
        if (statusCode === 429) {
          const reason = findHeader(rawHeaders, 'stripe-rate-limited-reason');
          if (reason !== undefined && CONCURRENCY_REASONS.has(reason.trim())) sample = 'concurrency';
          else pauseMs = stripeBackoff(key);
        } else if (backoffs.size > 0) {
          backoffs.delete(key);
        }
      } else if (kind === 'headers') {
        pauseMs = readAnnouncement(statusCode, rawHeaders, clock.now())?.pauseMs;
      }
      this.release(sample);
      this.settle({ id: this.id, reserved: cost, charged, reset, pauseMs, answeredAt: clock.now() });
      if (!throttled) return false;
      // absorbed when the mirror can afford the query again within the route deadline (and maxWait)
      const view = store?.view(prefix + key);
      const shortMs = view === undefined ? 0 : view.pausedForMs > 0 ? view.pausedForMs : (Math.max(0, retryCost - view.available) * 1000) / view.restoreRate;
      const absorb = onExceed === 'queue' && shortMs <= maxWaitMs && clock.monotonic() + shortMs < this.req.deadlineAt;
      if (!absorb) absorbed(this.req, false);
      return absorb;
    }

    fail(sent: boolean, timeout: boolean): void {
      if (!this.open) return;
      this.open = false;
      this.release(timeout ? 'overload' : undefined);
      // sent without an answer: the provider may have charged it, so the reservation stays spent
      this.settle({ id: this.id, reserved: this.cost, charged: sent ? this.cost : 0 });
    }

    private release(sample: SampleKind | undefined): void {
      if (limiter === undefined) return;
      const now = clock.monotonic();
      if (sample !== undefined) limiter.sample(sample, this.startedAt, now - this.startedAt, this.inflightAtStart + 1, now);
      limiter.release();
      queue.wake();
    }

    private settle(x: Settlement): void {
      if (store === undefined || (x.reserved === 0 && x.reset === undefined && x.pauseMs === undefined)) return;
      const done = store.settle(prefix + this.key, x, shape);
      const refunded = x.reserved > x.charged || x.reset !== undefined;
      if (!refunded) return;
      if (done instanceof Promise) void done.then(() => queue.wake(this.key));
      else queue.wake(this.key);
    }
  }

  return {
    upstream,
    fingerprint: print,
    admit,
    view() {
      const keys: Record<string, KeyView> = {};
      const names = new Set<string>([...(store?.keys() ?? []).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)), ...waiting.keys()]);
      for (const k of names) {
        const v = store?.view(prefix + k);
        keys[k === '' ? 'global' : k] = {
          available: v === undefined || v.capacity === 0 ? null : v.available,
          capacity: v === undefined || v.capacity === 0 ? null : v.capacity,
          restoreRate: v === undefined || v.capacity === 0 ? null : v.restoreRate,
          waiting: waiting.get(k) ?? 0,
          concurrencyLimit: limiter?.limit ?? null,
          inFlight: limiter?.inflight ?? v?.inflight ?? 0,
          pausedForMs: v?.pausedForMs ?? 0,
        };
      }
      return { kind: kind ?? null, store: cfg?.store ?? 'memory', concurrencyLimit: limiter?.limit ?? null, inFlight: limiter?.inflight ?? 0, keys };
    },
    available() {
      if (!hasBucket || store === undefined) return undefined;
      let least: number | undefined;
      for (const k of store.keys()) {
        if (!k.startsWith(prefix)) continue;
        const v = store.view(k);
        if (v !== undefined && (least === undefined || v.available < least)) least = v.available;
      }
      return least;
    },
    concurrencyLimit: () => limiter?.limit,
  };
}

/** A response header's first value, by lowercase name, from undici's raw list. */
function findHeader(raw: readonly Buffer[], lowerName: string): string | undefined {
  const len = lowerName.length;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === len && name.toString('latin1').toLowerCase() === lowerName) return raw[i + 1]!.toString('latin1');
  }
  return undefined;
}

function retryAfterMs(rawHeaders: readonly Buffer[]): number | undefined {
  const h = scanLimitHeaders(rawHeaders);
  // eslint-disable-next-line no-restricted-properties -- an HTTP-date Retry-After is wall-clock time
  return parseRetryAfter(h.retryAfter, Date.now());
}

/** Key values longer than this are cut (a shop domain or account id is far shorter). */
const MAX_KEY_CHARS = 128;

/** `key` -> the budget a request counts against: '' for the upstream's one, else the header's or claim's value. */
function compileKey(key: string): (req: GateRequest) => string {
  if (key === 'global') return () => '';
  if (key === 'ip') return (req) => req.ex?.clientIp ?? '';
  if (key.startsWith('header:')) {
    const lower = key.slice('header:'.length).toLowerCase();
    return (req) => (req.header(lower) ?? '').trim().toLowerCase().slice(0, MAX_KEY_CHARS);
  }
  const claim = key.slice('jwt:'.length);
  return (req) => {
    const v = req.ex?.claims?.[claim];
    return typeof v === 'string' || typeof v === 'number' ? String(v).slice(0, MAX_KEY_CHARS) : '';
  };
}
