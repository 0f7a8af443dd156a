import { hash } from 'node:crypto';
import type { Attributes } from '@opentelemetry/api';
import type { Redis } from 'ioredis';
import { fingerprint } from '../config/fingerprint.js';
import type { Config, QuotaConfig, RouteConfig } from '../config/schema.js';
import { GatehouseError } from '../core/errors.js';
import type { Exchange, Stage } from '../core/exchange.js';
import type { Policy } from '../core/send.js';
import type { Clock } from '../core/clock.js';
import type { StoreRegistry } from '../stores/stores.js';
import { ATTR, EVENTS } from '../core/names.js';
import { shapeOf, type BucketShape } from '../core/bucket.js';
import { compileRouteLimits, type RouteOutcome } from './route-limits.js';
import { createWaitQueue, type AttemptOutcome, type WaitQueue } from '../core/wait-queue.js';
import { formatRateLimit, policyMember, POLICY_HEADER, retryAfterSeconds, STATE_HEADER } from './ratelimit-headers.js';
import {
  createFallbackQuotaStore,
  createMemoryQuotaStore,
  createRedisQuotaStore,
  type FallbackObserver,
  type QuotaStore,
} from './stores.js';
import { createUpstreamLimits, observeUpstreamLimits, type PauseObserver, type UpstreamLimits, type UpstreamPause } from './upstream-limits.js';

/**
 * Quotas (SPEC §5): compiled once per config into runtimes that outlive reloads, and into one
 * stage per route that has `quota:`. A route without quotas gets no stage and no policy.
 *
 * Per request: work out each limit's bucket key, take one token from every bucket at once
 * (all or nothing, per store), answer 429 `rate_limited` or wait in the quota's queue, and add
 * `RateLimit-Policy` / `RateLimit` to whatever answer the client gets.
 */

export type DecisionResult = 'allowed' | 'rejected' | 'queued' | 'fallback';

/** Telemetry's view of quotas; src/telemetry/quota-observer.ts implements it, tests record. */
export interface QuotaObserver extends FallbackObserver, PauseObserver {
  /** A recorder for one route, built at compile time so a decision costs one call. */
  route(name: string): { decision(result: DecisionResult): void };
  queueDepth(quota: string, delta: number): void;
  waited(quota: string, seconds: number, result: 'allowed' | 'rejected' | 'cancelled'): void;
}

export interface QuotaDeps {
  readonly clock: Clock;
  readonly stores: StoreRegistry;
  readonly observer: QuotaObserver;
}

/** One quota (named, or inline as `<route>-<index>`) and its runtime state. */
interface QuotaRuntime {
  readonly name: string;
  /** Of the config and its store's: the runtime is reused across reloads while it holds. */
  readonly fingerprint: string;
  readonly config: QuotaConfig;
  readonly shape: BucketShape;
  readonly store: QuotaStore;
  /** Storage keys start with this: the quota's name and a hash of what shapes its buckets. */
  readonly prefix: string;
  /** The storage key of this request's bucket. */
  readonly keyOf: (ex: Exchange) => string;
  readonly queue: WaitQueue | undefined;
  readonly maxWaitMs: number;
  /** This quota's `RateLimit-Policy` member. */
  readonly policy: string;
}

interface StoreRuntime {
  readonly fingerprint: string;
  readonly store: QuotaStore;
  close(): void;
}

/** Every quota runtime of one plan; runtimes are handed on to the next plan when unchanged. */
export interface QuotaRegistry {
  readonly quotas: ReadonlyMap<string, QuotaRuntime>;
  readonly stores: ReadonlyMap<string, StoreRuntime>;
  readonly upstreams: UpstreamLimits;
  /** `GET /admin/quotas`. */
  view(): QuotasView;
  /** Stops what runs in the background (Redis probes). */
  close(): void;
}

export interface QuotasView {
  readonly quotas: Record<string, unknown>;
  readonly upstreams: Record<string, { readonly pausedForMs: number; readonly source: string }>;
}

/** Every memory store is the same thing (this process), so they share one set of buckets. */
const MEMORY = '(memory)';

export function compileQuotas(config: Config, deps: QuotaDeps, previous?: QuotaRegistry): QuotaRegistry {
  const defs = new Map<string, QuotaConfig>(Object.entries(config.quotas));
  const routesOf = new Map<string, string[]>();
  for (const route of config.routes) {
    route.quota?.forEach((item, j) => {
      const name = typeof item === 'string' ? item : `${route.name}-${j}`;
      if (typeof item !== 'string') defs.set(name, item);
      routesOf.set(name, [...(routesOf.get(name) ?? []), route.name]);
    });
  }

  const stores = new Map<string, StoreRuntime>();
  const storeOf = (storeName: string | undefined): StoreRuntime => {
    const cfg = storeName === undefined ? undefined : config.stores[storeName];
    const id = cfg?.type === 'redis' ? storeName! : MEMORY;
    let runtime = stores.get(id);
    if (runtime !== undefined) return runtime;
    const print = cfg?.type === 'redis' ? fingerprint(cfg) : MEMORY;
    const old = previous?.stores.get(id);
    runtime = old !== undefined && old.fingerprint === print ? old : id === MEMORY ? memoryRuntime(deps.clock) : redisRuntime(id, print, deps);
    stores.set(id, runtime);
    return runtime;
  };

  const quotas = new Map<string, QuotaRuntime>();
  for (const [name, def] of defs) {
    if (!routesOf.has(name)) continue; // defined but unused: nothing to keep
    const store = storeOf(def.store);
    const print = fingerprint({ def, store: store.fingerprint });
    const old = previous?.quotas.get(name);
    quotas.set(name, old !== undefined && old.fingerprint === print ? old : createQuotaRuntime(name, def, print, store.store, deps));
  }

  const upstreams = previous?.upstreams ?? createUpstreamLimits(deps.clock, deps.observer);

  return {
    quotas,
    stores,
    upstreams,
    view: () => viewOf(quotas, routesOf, upstreams),
    close() {
      for (const s of stores.values()) s.close();
    },
  };
}

/** After a reload's swap: stops the background work of stores the new plan no longer uses. */
export function retireQuotaStores(previous: QuotaRegistry, next: QuotaRegistry): void {
  const kept = new Set(next.stores.values());
  for (const s of previous.stores.values()) if (!kept.has(s)) s.close();
}

function memoryRuntime(clock: Clock): StoreRuntime {
  return { fingerprint: MEMORY, store: createMemoryQuotaStore(MEMORY, () => clock.monotonic()), close() {} };
}

function redisRuntime(name: string, print: string, deps: QuotaDeps): StoreRuntime {
  // The registry hands out its shared client; after a reload that changed the store it closes
  // the old one ('end'), and the next call here picks up the new one.
  let client: Redis | undefined;
  const current = (): Redis => {
    if (client === undefined || client.status === 'end') client = deps.stores.redis(name);
    return client;
  };
  try {
    current(); // connect now rather than on the first request
  } catch {
    // a store added by this reload: the registry adopts it once the new plan is in place
  }
  const shared = createRedisQuotaStore(name, current);
  const local = createMemoryQuotaStore(`${name} (fallback)`, () => deps.clock.monotonic());
  const store = createFallbackQuotaStore(shared, local, {
    isReady: () => current().status === 'ready',
    probe: () => current().ping(),
    onReady: (listener) => client?.on('ready', listener),
    observer: deps.observer,
  });
  return { fingerprint: print, store, close: () => store.close?.() };
}

function createQuotaRuntime(name: string, def: QuotaConfig, print: string, store: QuotaStore, deps: QuotaDeps): QuotaRuntime {
  // Buckets outlive a change of queue settings, not a change of what they count.
  const prefix = `q:${name}:${fingerprint({ limit: def.limit, per: def.per, burst: def.burst, key: def.key }).slice(0, 8)}:`;
  const maxWaitMs = def.maxWait ?? DEFAULT_MAX_WAIT_MS;
  return {
    name,
    fingerprint: print,
    config: def,
    // the space is the bucket identity (prefix), so a reload that changes only maxKeys keeps the buckets
    shape: { ...shapeOf(def.limit, def.per, def.burst), space: prefix, maxKeys: def.maxKeys },
    store,
    prefix,
    keyOf: compileKey(def.key, prefix, store.mode() !== 'memory'),
    queue:
      def.onExceed === 'queue'
        ? createWaitQueue({ maxQueue: def.maxQueue ?? DEFAULT_MAX_QUEUE, maxWaitMs, onDepth: (d) => deps.observer.queueDepth(name, d) })
        : undefined,
    maxWaitMs,
    policy: policyMember(name, def.limit, def.per),
  };
}

const DEFAULT_MAX_WAIT_MS = 10_000;
const DEFAULT_MAX_QUEUE = 1000;

/** Key values longer than this are stored as their hash: bounded memory per bucket. */
const MAX_KEY_CHARS = 128;

const hashed = (value: string): string => `#${hash('sha256', value, 'base64url')}`;
const shortened = (value: string): string => (value.length <= MAX_KEY_CHARS ? value : hashed(value));

/**
 * `key` -> the function that names a request's bucket. A request without the header or claim
 * counts by its client address (as Kong's limit_by falls back), never as a free pass.
 * In a shared store header and claim values are hashed: an `x-api-key` must not appear in
 * clear in Redis key names, for every `KEYS` or monitoring tool to see.
 */
function compileKey(key: string, prefix: string, shared: boolean): (ex: Exchange) => string {
  const keyPart = shared ? hashed : shortened;
  if (key === 'global') {
    const only = `${prefix}*`;
    return () => only;
  }
  if (key === 'ip') return (ex) => prefix + ex.clientIp;
  const byIp = `${prefix}ip:`;
  if (key.startsWith('header:')) {
    const lower = key.slice('header:'.length).toLowerCase();
    const byHeader = `${prefix}h:`;
    return (ex) => {
      const v = ex.header(lower);
      return v === undefined || v === '' ? byIp + ex.clientIp : byHeader + keyPart(v);
    };
  }
  const claim = key.slice('jwt:'.length);
  const byClaim = `${prefix}j:`;
  return (ex) => {
    const v = ex.claims?.[claim];
    if (typeof v === 'string' && v !== '') return byClaim + keyPart(v);
    if (typeof v === 'number' || typeof v === 'boolean') return byClaim + String(v);
    return byIp + ex.clientIp;
  };
}

// ---------------------------------------------------------------- per route

/** What a route's quotas add to it: two stages, and a policy when it honours provider limits. */
export interface RouteQuota {
  /** Runs first: `RateLimit-Policy` on every answer, refusals of earlier stages (401) included. */
  readonly announce: Stage;
  /** The quota decision itself, after authentication. */
  readonly stage: Stage;
  readonly observe: Policy | undefined;
}

/** One waiter's final answer. */
type Final = { readonly granted: RouteOutcome } | { readonly refused: GatehouseError };

export function compileRouteQuota(route: RouteConfig, registry: QuotaRegistry, deps: QuotaDeps): RouteQuota | undefined {
  if (route.quota === undefined) return undefined;
  const limits = route.quota.map((item, j) => registry.quotas.get(typeof item === 'string' ? item : `${route.name}-${j}`)!);
  const n = limits.length;
  const names = limits.map((l) => l.name);
  const policyValue = limits.map((l) => l.policy).join(', ');
  const { clock } = deps;
  const recorder = deps.observer.route(route.name);
  const priority = route.priority;

  const { takeAll, refundAll, verdict } = compileRouteLimits(limits.map((l) => ({ shape: l.shape, store: l.store, queues: l.queue !== undefined })));
  const queued = limits.flatMap((l, i) => (l.queue !== undefined ? [i] : []));

  // A provider's limit is one limit on everything gatehouse sends it, so routes with a global
  // quota honour it. Per-client quotas (ip, header, jwt) are inbound: one shopper's 429 from
  // the store must not stop everyone else.
  const pause: UpstreamPause | undefined = limits.some((l) => l.config.key === 'global') ? registry.upstreams.pauseOf(route.upstream) : undefined;
  const pausedWaitAt = limits.findIndex((l) => l.queue !== undefined && l.config.key === 'global');

  const allowedEvent: Attributes = { [ATTR.quota]: names.join(','), [ATTR.quotaResult]: 'allowed' };

  function allowed(ex: Exchange): undefined {
    recorder.decision('allowed');
    ex.event(EVENTS.quotaDecision, allowedEvent);
    return undefined;
  }

  function refusal(ex: Exchange, at: number, waitMs: number, why: string): GatehouseError {
    const error = rateLimited(why, waitMs);
    recorder.decision('rejected');
    ex.event(EVENTS.quotaDecision, { [ATTR.quota]: names[at] ?? '', [ATTR.quotaResult]: 'rejected', [ATTR.quotaRetryAfter]: Number(error.headers!['retry-after']) });
    return error;
  }

  const overLimit = (at: number): string => {
    const c = limits[at]!.config;
    return `quota '${names[at]}' allows ${c.limit} requests per ${c.per / 1000}s${c.key === 'global' ? '' : ` per ${c.key}`}`;
  };

  function decide(ex: Exchange, keys: readonly string[], outcome: RouteOutcome): GatehouseError | undefined | Promise<GatehouseError | undefined> {
    if (outcome.fallback) recorder.decision('fallback');
    ex.setResponseHeader(STATE_HEADER, formatRateLimit(names, outcome.buckets));
    if (outcome.allowed) return allowed(ex);
    const { waitMs, rejectAt, queueAt } = verdict(outcome);
    if (rejectAt >= 0 || queueAt < 0) return refusal(ex, Math.max(rejectAt, 0), waitMs, overLimit(Math.max(rejectAt, 0)));
    return enqueue(ex, keys, queueAt, waitMs);
  }

  /** A queued request's take: granted, refused by a reject-limit, or wait for a refill. */
  const judge = (outcome: RouteOutcome): AttemptOutcome<Final> => {
    if (outcome.fallback) recorder.decision('fallback');
    if (outcome.allowed) return { done: { granted: outcome } };
    const { waitMs, rejectAt } = verdict(outcome);
    if (rejectAt >= 0) return { done: { refused: rateLimited(overLimit(rejectAt), waitMs) } };
    return { waitMs: Math.max(1, waitMs) };
  };

  /** The head of the lane tries again: granted, refused by a reject-limit, or wait for a refill. */
  function attempt(keys: readonly string[]): AttemptOutcome<Final> | Promise<AttemptOutcome<Final>> {
    if (pause !== undefined) {
      const left = pause.until - clock.monotonic();
      if (left > 0) return { waitMs: left };
    }
    const outcome = takeAll(keys);
    return outcome instanceof Promise ? outcome.then(judge) : judge(outcome);
  }

  /** Waits in limit `at`'s queue. */
  function enqueue(ex: Exchange, keys: readonly string[], at: number, waitMs: number): GatehouseError | Promise<GatehouseError | undefined> {
    const limit = limits[at]!;
    const queue = limit.queue!;
    if (queue.isFull()) return refusal(ex, at, Math.max(waitMs, limit.shape.intervalMs), `the queue of quota '${limit.name}' is full (${queue.size} waiting)`);
    if (waitMs > limit.maxWaitMs) return refusal(ex, at, waitMs, `${overLimit(at)}, and the wait is longer than its maxWait`);
    recorder.decision('queued');
    ex.event(EVENTS.quotaQueued, { [ATTR.quota]: limit.name, [ATTR.quotaWaitEstimate]: waitMs });
    const started = clock.monotonic();
    const waited = () => (clock.monotonic() - started) / 1000;
    return queue
      .wait<Final>(keys[at]!, {
        priority,
        signal: ex.signal,
        firstWaitMs: waitMs,
        attempt: () => attempt(keys),
        expired: (lastWaitMs) => ({
          refused: rateLimited(`no capacity in quota '${limit.name}' within its maxWait of ${limit.maxWaitMs}ms`, Math.max(lastWaitMs, limit.shape.intervalMs)),
        }),
        abandoned: (final) => {
          if ('granted' in final) refundAll(keys);
        },
      })
      .then((final) => {
        const seconds = waited();
        if (final === undefined) {
          deps.observer.waited(limit.name, seconds, 'cancelled');
          return undefined; // the client left: nobody to answer
        }
        ex.event(EVENTS.quotaReleased, { [ATTR.quota]: limit.name, [ATTR.quotaWaited]: Math.round(seconds * 1000) });
        if ('refused' in final) {
          deps.observer.waited(limit.name, seconds, 'rejected');
          recorder.decision('rejected');
          ex.event(EVENTS.quotaDecision, { [ATTR.quota]: limit.name, [ATTR.quotaResult]: 'rejected' });
          return final.refused;
        }
        deps.observer.waited(limit.name, seconds, 'allowed');
        replaceHeader(ex, STATE_HEADER, formatRateLimit(names, final.granted.buckets));
        return allowed(ex);
      });
  }

  function paused(ex: Exchange, keys: readonly string[], leftMs: number): GatehouseError | Promise<GatehouseError | undefined> {
    // The provider's pause empties every global limit until its reset; what per-client limits
    // hold is not read (no store round trip for a request that is not sent)
    ex.setResponseHeader(STATE_HEADER, formatRateLimit(names, limits.map((l) => (l.config.key === 'global' ? { remaining: 0, resetMs: leftMs, retryAfterMs: leftMs } : undefined))));
    if (pausedWaitAt >= 0) return enqueue(ex, keys, pausedWaitAt, leftMs);
    return refusal(ex, 0, leftMs, `upstream '${route.upstream}' announced a limit (${pause!.source}); new requests wait for its reset`);
  }

  const announce: Stage = function announceQuota(ex) {
    ex.setResponseHeader(POLICY_HEADER, policyValue);
    return undefined;
  };

  const stage: Stage = function quota(ex) {
    const keys = new Array<string>(n);
    for (let i = 0; i < n; i++) keys[i] = limits[i]!.keyOf(ex);
    if (pause !== undefined && pause.until !== 0) {
      const left = pause.until - clock.monotonic();
      if (left > 0) return paused(ex, keys, left);
    }
    // requests already waiting for this bucket go first: no overtaking by arriving later
    for (const i of queued) if (limits[i]!.queue!.has(keys[i]!)) return enqueue(ex, keys, i, 0);
    const outcome = takeAll(keys);
    return outcome instanceof Promise ? outcome.then((o) => decide(ex, keys, o)) : decide(ex, keys, outcome);
  };

  return { announce, stage, observe: pause === undefined ? undefined : observeUpstreamLimits(registry.upstreams, pause) };
}

/** 429 `rate_limited` with `Retry-After`; the detail says when, too. */
function rateLimited(why: string, waitMs: number): GatehouseError {
  const retry = retryAfterSeconds(waitMs);
  return new GatehouseError('rate_limited', `${why}; retry in ${retry}s`, { 'retry-after': retry });
}

function replaceHeader(ex: Exchange, name: string, value: string): void {
  const list = ex.responseHeaders;
  if (list !== undefined) {
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === name) {
        list[i + 1] = value;
        return;
      }
    }
  }
  ex.setResponseHeader(name, value);
}

function viewOf(quotas: ReadonlyMap<string, QuotaRuntime>, routesOf: ReadonlyMap<string, readonly string[]>, upstreams: UpstreamLimits): QuotasView {
  const out: Record<string, unknown> = {};
  for (const [name, q] of quotas) {
    const c = q.config;
    out[name] = {
      limit: c.limit,
      perMs: c.per,
      burst: q.shape.burst,
      key: c.key,
      store: c.store ?? 'memory',
      storeMode: q.store.mode(),
      onExceed: c.onExceed,
      routes: routesOf.get(name) ?? [],
      /** Buckets that are not full; null where counting would be costly (Redis). */
      activeKeys: q.store.countKeys(q.prefix) ?? null,
      queue: q.queue === undefined ? null : { maxQueue: c.maxQueue ?? DEFAULT_MAX_QUEUE, maxWaitMs: q.maxWaitMs, depth: q.queue.size, ...q.queue.depth() },
    };
  }
  return { quotas: out, upstreams: upstreams.view() };
}
