import type { Logger } from 'pino';
import { answer, type AdminRoute } from '../core/admin.js';
import { fingerprint } from '../config/fingerprint.js';
import { REDACTED } from '../config/secret.js';
import type { Config, RouteConfig, WebhookConfig } from '../config/schema.js';
import type { Exchange, Stage } from '../core/exchange.js';
import type { Clock } from '../core/clock.js';
import { findHeader } from '../core/headers.js';
import { ATTR } from '../core/names.js';
import { randomUUID } from 'node:crypto';
import { shapeOf } from '../core/bucket.js';
import { createPace, type Pace } from '../core/pace.js';
import type { UpstreamClient } from '../core/upstream.js';
import type { DeliveryEngine, DeliveryTarget } from '../delivery/engine.js';
import type { DeliveryState, DeliveryStore, NewDelivery, NewMessage, ReplayableState, StoredDelivery } from '../delivery/store.js';
import type { DeliveryPolicy, DeliveryWorker, Sent, WorkerObserver } from '../delivery/worker.js';
import { compileEventType } from './event-type.js';
import { compileIntake, deliveryHeaderPlan, signedRequest, type IntakeObserver } from './intake.js';
import type { RequestHeaderPlan } from '../core/forwarding.js';
import { createReconciler, type FeedResult, type ReconcileObserver, type Reconciler } from './reconcile/reconciler.js';
import { eventSourceOf } from './reconcile/sources.js';
import type { ListedEvent } from './reconcile/source.js';
import { readKey, type SignedRequest } from './signature.js';
import { compileTypeFilter, type TypeFilter } from './type-filter.js';
import { compileHeaderCheck, compileVerifier } from './verify.js';

export type WebhookObserver = IntakeObserver & WorkerObserver & ReconcileObserver;

/** The destination of a route's own upstream, when it lists no `destinations`. */
const UPSTREAM = 'upstream';

/** One destination as a plan has it: where its events go. */
interface DestinationTarget {
  readonly upstream: UpstreamClient;
  /** `path`: where its events are delivered; undefined = the request path after the route's rewrite. */
  readonly path: string | undefined;
  /** The route's own upstream (no `destinations`): the route's `rewrite.host` applies. */
  readonly own: boolean;
}

/** Where a webhook route's events go, from the plan that is live now. */
interface WebhookTargets {
  readonly route: DeliveryTarget;
  readonly destinations: ReadonlyMap<string, DestinationTarget>;
  /** The `reconcile.upstream`. */
  readonly reconcile: UpstreamClient | undefined;
}

/** A destination's part of the runtime: what outlives a reload with the route's config. */
interface DestinationRuntime {
  readonly name: string;
  readonly wants: TypeFilter;
  readonly pace: Pace | undefined;
  readonly worker: DeliveryWorker;
}

/** A webhook route of one compiled plan: its intake (admission stage, handler), and where its events go. */
export interface WebhookRoute {
  readonly name: string;
  readonly admit: Stage;
  readonly handler: (ex: Exchange) => void;
  readonly targets: WebhookTargets;
  readonly runtime: WebhookRuntime;
}

/** What outlives a reload: the route's store, its destinations' workers and its reconciler, keyed by name + fingerprint. */
interface WebhookRuntime {
  readonly name: string;
  readonly key: string;
  readonly cfg: WebhookConfig;
  readonly storeName: string;
  store(): DeliveryStore;
  targets: WebhookTargets | undefined;
  readonly destinations: ReadonlyMap<string, DestinationRuntime>;
  readonly reconciler: Reconciler | undefined;
  /** The deliveries of an event of this type (with this ordering key), one per destination that wants it. */
  deliveriesFor(type: string | undefined, orderKey: string | undefined): NewDelivery[];
  /** Intake bodies being read now (`webhook.maxConcurrent`): shared by the plans of a reload. */
  readonly reading: { active: number };
}

export interface WebhookRegistryDeps {
  /** The durable delivery engine shared with the outbox: its stores, workers, back-off and dead letters. */
  readonly engine: DeliveryEngine;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly observer: WebhookObserver;
}

export interface WebhookCompileInput {
  readonly route: RouteConfig;
  readonly target: DeliveryTarget;
  /** Any upstream of the plan, as a concern may call it: destinations and reconciliation. */
  readonly clientOf: (upstream: string) => UpstreamClient;
  /** The config being compiled (its stores, not yet adopted by the store registry). */
  readonly config: Config;
  /** The route's request-header plan. */
  readonly requestHeaders: RequestHeaderPlan;
  readonly isDraining: () => boolean;
}

export interface WebhookRegistry {
  /** Compile time: the route's intake, reusing its runtime when its config is unchanged. */
  compile(input: WebhookCompileInput): WebhookRoute;
  /** Once a plan is live: its routes' runtimes deliver, the rest stop (their events wait in the store). */
  activate(routes: readonly WebhookRoute[]): void;
  /** `/admin/webhooks/...` (SPEC §9). */
  readonly adminRoutes: readonly AdminRoute[];
  /** Shutdown: in-flight deliveries get `graceMs`, then go back to the store for the next start. */
  close(graceMs: number): Promise<void>;
}

/** A webhook body's size limit when the route sets no maxBodySize (it must be read whole to verify). */
export const WEBHOOK_DEFAULT_MAX_BODY = 1024 * 1024;

export function createWebhookRegistry(deps: WebhookRegistryDeps): WebhookRegistry {
  const { engine, logger, observer } = deps;
  const active = new Map<string, WebhookRuntime>();
  let closed = false;

  /** A webhook delivery: the stored request, to its destination's path, with gatehouse's own headers. */
  function send(runtime: WebhookRuntime, d: StoredDelivery, signal: AbortSignal): Promise<Sent> | undefined {
    const targets = runtime.targets;
    const dest = targets?.destinations.get(d.destination);
    if (targets === undefined || dest === undefined) return undefined;
    const target = targets.route;
    const q = d.path.indexOf('?');
    const [bare, query] = q < 0 ? [d.path, ''] : [d.path.slice(0, q), d.path.slice(q)];
    const path = (dest.path ?? target.rewrite(bare)) + query;
    const eventId = d.eventId ?? '';
    return dest.upstream
      .call({
        route: d.route,
        method: d.method,
        target: path,
        headers: [...d.headers, 'gatehouse-webhook-id', d.id, 'gatehouse-webhook-event-id', eventId, 'gatehouse-webhook-attempt', String(d.attempts)],
        body: d.body,
        // the route's rewrite.host is for its own upstream; a destination's upstream gets its endpoint's authority
        host: !dest.own ? undefined : target.host === 'preserve' ? findHeader(d.headers, 'x-forwarded-host') : target.host,
        timeoutMs: target.timeoutMs,
        signal,
        resends: d.attempts - 1,
        link: d.trace,
        attributes: { [ATTR.webhookId]: d.id, [ATTR.webhookEventId]: eventId, [ATTR.webhookAttempt]: d.attempts },
        maxBodyBytes: 0,
      })
      .then((result) => ({ result, upstream: dest.upstream.name, path }));
  }

  /**
   * A listed event never received (reconciliation): stored and delivered as if its webhook had
   * come, de-duplicated by its id in the same step, marked `gatehouse-webhook-source: reconcile`.
   */
  async function feed(runtime: WebhookRuntime, route: RouteConfig, event: ListedEvent): Promise<FeedResult> {
    const { cfg } = runtime;
    const now = deps.clock.now();
    const req = signedRequest({ header: (name) => findHeader(event.headers, name) }, event.body);
    const orderKey = cfg.delivery.orderBy === undefined ? undefined : readKey(req, cfg.delivery.orderBy);
    const deliveries = runtime.deliveriesFor(event.type, orderKey);
    const msg: NewMessage = {
      id: randomUUID(),
      route: runtime.name,
      kind: 'webhook',
      provider: cfg.provider,
      eventId: event.id,
      createdAt: now,
      method: 'POST',
      path: route.match.path ?? route.match.pathPrefix ?? '/',
      headers: [...event.headers, 'user-agent', 'gatehouse-reconcile', 'gatehouse-webhook-source', 'reconcile'],
      body: deliveries.length > 0 ? event.body : Buffer.alloc(0),
      requestId: randomUUID(),
      trace: undefined,
    };
    const result = await runtime.store().accept(msg, deliveries, now, { key: event.id, ttlMs: cfg.dedupe.ttl });
    if (result === 'stored') {
      observer.intake(runtime.name, deliveries.length > 0 ? 'verified' : 'filtered');
      for (const d of runtime.destinations.values()) d.worker.notify();
    }
    return result;
  }

  function createRuntime(route: RouteConfig, key: string, cfg: WebhookConfig, storeName: string): WebhookRuntime {
    const name = route.name;
    let store: DeliveryStore | undefined;
    const { attempts, backoff, deadLetter, concurrency } = cfg.delivery;
    const policy: DeliveryPolicy = {
      attempts,
      backoff,
      deadLetter,
      // bodies stay while the message is kept (a day, and the latest 100 per route): a bulk replay
      // resends delivered events too
      keepBody: true,
      // a 2xx from the store counts as delivered; anything else is tried again while attempts last
      verdict: (result) => (result.failure === undefined && result.status >= 200 && result.status <= 299 ? 'delivered' : 'retry'),
    };
    const configured = cfg.destinations ?? [{ name: UPSTREAM, upstream: route.upstream, types: ['*'], path: undefined, rate: undefined }];
    const destinations = new Map<string, DestinationRuntime>();
    for (const dc of configured) {
      const pace = dc.rate === undefined ? undefined : createPace(shapeOf(dc.rate.limit, dc.rate.per, dc.rate.burst));
      destinations.set(dc.name, {
        name: dc.name,
        wants: compileTypeFilter(dc.types),
        pace,
        worker: engine.worker({
          route: name,
          destination: dc.name,
          concurrency,
          policy,
          pace,
          store: () => runtime.store(),
          send: (d, signal) => send(runtime, d, signal),
          timeoutMs: () => runtime.targets?.route.timeoutMs ?? 30_000,
          observer,
        }),
      });
    }
    const source = cfg.reconcile === undefined ? undefined : eventSourceOf(cfg.provider);
    const runtime: WebhookRuntime = {
      name,
      key,
      cfg,
      storeName,
      // opened on first use (activation), after the registry of stores has adopted the new config
      store: () => (store ??= engine.store(storeName, name)),
      targets: undefined,
      reading: { active: 0 },
      destinations,
      deliveriesFor(type, orderKey) {
        const out: NewDelivery[] = [];
        for (const d of destinations.values()) if (d.wants(type)) out.push({ destination: d.name, orderKey });
        return out;
      },
      reconciler:
        source === undefined
          ? undefined
          : createReconciler({
              route: name,
              cfg: cfg.reconcile!,
              source,
              client: () => runtime.targets!.reconcile!,
              feed: (event) => feed(runtime, route, event),
              timeoutMs: 30_000,
              clock: deps.clock,
              logger,
              observer,
            }),
    };
    return runtime;
  }

  const workersOf = (r: WebhookRuntime) => [...r.destinations.values()].map((d) => d.worker);
  const stopRuntime = (r: WebhookRuntime, graceMs: number) =>
    Promise.allSettled([...workersOf(r).map((w) => w.stop(graceMs)), r.reconciler?.stop()]);

  const storesInUse = (): DeliveryStore[] => [...new Set([...active.values()].map((r) => r.store()))];

  /** `/admin/webhooks/...` (SPEC §9): what is dead, replaying one, the latest events. */
  const adminRoutes: AdminRoute[] = [
    {
      method: 'GET',
      path: '/admin/webhooks/dead',
      async handle() {
        const seen = new Map<string, StoredDelivery>();
        for (const store of storesInUse()) for (const ev of await store.listDead('webhook')) seen.set(ev.id, ev);
        const events = [...seen.values()].sort((a, b) => (a.deadAt ?? 0) - (b.deadAt ?? 0));
        return answer(200, { events: events.map(deadView) });
      },
    },
    {
      method: 'POST',
      path: '/admin/webhooks/dead/:id/replay',
      async handle({ params }) {
        const id = params.id!;
        for (const store of storesInUse()) {
          // every dead delivery of the event: with fan-out, one per destination that gave up
          const dead = (await store.listDead('webhook')).filter((e) => e.id === id && e.state === 'dead');
          const ev = dead[0];
          if (ev === undefined) continue;
          const runtime = active.get(ev.route);
          if (runtime === undefined) return answer(409, { error: `route '${ev.route}' of event ${id} is not configured: nowhere to deliver it` });
          for (const d of dead) {
            await store.replay({ id, destination: d.destination }, deps.clock.now());
            runtime.destinations.get(d.destination)?.worker.notify();
          }
          return answer(202, { id, route: ev.route, eventId: ev.eventId, status: 'replaying', destinations: dead.map((d) => d.destination) });
        }
        return answer(404, { error: `no dead-lettered webhook event with id ${id}` });
      },
    },
    {
      method: 'GET',
      path: '/admin/webhooks/recent',
      async handle({ query }) {
        const only = query.get('route');
        const limit = Math.min(100, Math.max(1, Number(query.get('limit') ?? 50) || 50));
        if (only !== null && !active.has(only)) return answer(404, { error: `no webhook route named '${only}'`, routes: [...active.keys()] });
        const runtimes = only === null ? [...active.values()] : [active.get(only)!];
        const events: unknown[] = [];
        for (const r of runtimes) {
          // every destination's delivery of the latest `limit` events, grouped by event
          const rows = await r.store().list({ kind: 'webhook', route: r.name, destination: undefined, limit: limit * r.destinations.size });
          for (const group of byMessage(rows).slice(0, limit)) events.push(recentView(group, r.cfg.inspect));
        }
        return answer(200, { events });
      },
    },
    {
      method: 'POST',
      path: '/admin/webhooks/replay',
      handle: async ({ body }) => replay(body),
    },
  ];

  /** `POST /admin/webhooks/replay` (SPEC §14): the deliveries of a time range, again. */
  async function replay(body: unknown): Promise<ReturnType<typeof answer>> {
    const req = parseReplay(body);
    if (typeof req === 'string') return answer(400, { error: req });
    const runtime = active.get(req.route);
    if (runtime === undefined) return answer(404, { error: `no webhook route named '${req.route}'`, routes: [...active.keys()] });
    if (req.destination !== undefined && !runtime.destinations.has(req.destination)) {
      return answer(404, { error: `route '${req.route}' has no destination '${req.destination}'`, destinations: [...runtime.destinations.keys()] });
    }
    const from: ReplayableState[] = req.status === 'any' ? ['delivered', 'dead'] : [req.status];
    const store = runtime.store();
    const matching = await store.list({
      kind: 'webhook',
      route: req.route,
      destination: req.destination,
      states: from,
      from: req.from,
      to: req.to,
      limit: REPLAY_MAX,
    });
    // a destination the route no longer has is left alone: nowhere to send it
    const deliveries = matching.filter((d) => runtime.destinations.has(d.destination));
    if (req.dryRun) return answer(200, { count: deliveries.length, ids: [...new Set(deliveries.map((d) => d.id))].slice(0, 100) });
    let count = 0;
    const now = deps.clock.now();
    for (const d of deliveries) if ((await store.replay({ id: d.id, destination: d.destination }, now, from)) !== undefined) count++;
    for (const w of workersOf(runtime)) w.notify();
    logger.info({ route: req.route, destination: req.destination, from: iso(req.from), to: iso(req.to), status: req.status, count }, 'webhook deliveries replayed');
    return answer(202, { count });
  }

  return {
    compile(input) {
      const { route } = input;
      const cfg = route.webhook!;
      const storeName = cfg.dedupe.store ?? engine.defaultStore(input.config);
      const storeConfig = Object.hasOwn(input.config.stores, storeName) ? input.config.stores[storeName] : null;
      const key = `${route.name}:${fingerprint(cfg)}:${storeName}:${fingerprint([storeConfig, input.config.dataDir])}`;
      const current = active.get(route.name);
      const runtime = current?.key === key ? current : createRuntime(route, key, cfg, storeName);
      const destinations = new Map<string, DestinationTarget>();
      for (const d of cfg.destinations ?? []) destinations.set(d.name, { upstream: input.clientOf(d.upstream), path: d.path, own: false });
      if (cfg.destinations === undefined) destinations.set(UPSTREAM, { upstream: input.target.upstream, path: undefined, own: true });
      const targets: WebhookTargets = {
        route: input.target,
        destinations,
        reconcile: cfg.reconcile === undefined ? undefined : input.clientOf(cfg.reconcile.upstream),
      };
      const eventType = compileEventType(cfg);
      const orderBy = cfg.delivery.orderBy;
      const intake = compileIntake({
        route: route.name,
        cfg,
        checkHeaders: compileHeaderCheck(cfg),
        verify: compileVerifier(cfg),
        reading: runtime.reading,
        store: () => runtime.store(),
        deliveriesFor: (req: SignedRequest) => runtime.deliveriesFor(eventType(req), orderBy === undefined ? undefined : readKey(req, orderBy)),
        stored: () => {
          for (const w of workersOf(runtime)) w.notify();
        },
        headers: deliveryHeaderPlan(input.requestHeaders),
        clock: deps.clock,
        observer,
        logger,
        isDraining: input.isDraining,
      });
      return { name: route.name, admit: intake.admit, handler: intake.handler, targets, runtime };
    },

    activate(routes) {
      if (closed) return;
      const next = new Map(routes.map((r) => [r.name, r]));
      for (const [name, runtime] of active) {
        if (next.get(name)?.runtime !== runtime) {
          active.delete(name);
          void stopRuntime(runtime, runtime.targets?.route.timeoutMs ?? 0);
        }
      }
      for (const r of routes) {
        r.runtime.targets = r.targets;
        if (active.get(r.name) === r.runtime) continue;
        active.set(r.name, r.runtime);
        try {
          const store = r.runtime.store();
          if (!store.durable) logger.warn({ route: r.name }, 'webhook events of this route are not durable');
        } catch (err) {
          logger.error({ route: r.name, store: r.runtime.storeName, err: (err as Error).message }, 'cannot open the webhook store');
        }
        for (const w of workersOf(r.runtime)) w.start();
        r.runtime.reconciler?.start();
      }
    },

    adminRoutes,

    async close(graceMs) {
      closed = true;
      const runtimes = [...active.values()];
      active.clear();
      await Promise.allSettled(runtimes.map((r) => stopRuntime(r, graceMs)));
    },
  };
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** What every admin view shows of an event. */
const eventView = (ev: StoredDelivery) => ({
  id: ev.id,
  route: ev.route,
  provider: ev.provider ?? null,
  eventId: ev.eventId ?? null,
  receivedAt: iso(ev.createdAt),
  attempts: ev.attempts,
  lastError: ev.lastError ?? null,
});

function deadView(ev: StoredDelivery) {
  return { ...eventView(ev), destination: ev.destination, deadAt: iso(ev.deadAt), state: ev.state === 'dead' ? 'dead' : 'replaying' };
}

/** Deliveries grouped by their message, in the order the messages came (newest first). */
function byMessage(rows: readonly StoredDelivery[]): StoredDelivery[][] {
  const groups = new Map<string, StoredDelivery[]>();
  for (const d of rows) {
    const g = groups.get(d.id);
    if (g === undefined) groups.set(d.id, [d]);
    else g.push(d);
  }
  return [...groups.values()];
}

/** The event's state across its destinations: the least advanced one (pending, then dead, then delivered). */
function overall(states: readonly DeliveryState[]): DeliveryState {
  for (const s of ['delivering', 'pending', 'waiting', 'dead', 'cancelled'] as const) if (states.includes(s)) return s;
  return 'delivered';
}

function recentView(group: readonly StoredDelivery[], inspect: boolean) {
  const ev = group[0]!;
  const state = overall(group.map((d) => d.state));
  const next = group.filter((d) => d.state === 'pending').map((d) => d.nextAt);
  return {
    ...eventView(ev),
    attempts: Math.max(...group.map((d) => d.attempts)),
    lastError: group.find((d) => d.lastError !== undefined)?.lastError ?? null,
    state,
    nextAttemptAt: next.length === 0 ? null : iso(Math.min(...next)),
    deliveredAt: state === 'delivered' ? iso(Math.max(...group.map((d) => d.deliveredAt ?? 0))) : null,
    requestId: ev.requestId,
    source: findHeader(ev.headers, 'gatehouse-webhook-source') ?? 'webhook',
    destinations: Object.fromEntries(
      group.map((d) => [
        d.destination,
        { state: d.state, attempts: d.attempts, lastError: d.lastError ?? null, lastStatus: d.lastStatus ?? null, deliveredAt: iso(d.deliveredAt), nextAttemptAt: d.state === 'pending' ? iso(d.nextAt) : null },
      ]),
    ),
    ...(inspect ? { headers: redactHeaders(ev.headers), body: ev.body.toString('utf8') } : {}),
  };
}

/** Deliveries one replay request may touch at most. */
const REPLAY_MAX = 100_000;

interface ReplayRequest {
  readonly route: string;
  readonly destination: string | undefined;
  readonly from: number;
  readonly to: number;
  readonly status: 'delivered' | 'dead' | 'any';
  readonly dryRun: boolean;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** The replay request's body, or what is wrong with it. */
function parseReplay(body: unknown): ReplayRequest | string {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return 'the body must be a JSON object: {"route", "from", "to", "destination"?, "status"?, "dryRun"?}';
  const b = body as Record<string, unknown>;
  const known = new Set(['route', 'destination', 'from', 'to', 'status', 'dryRun']);
  const unknown = Object.keys(b).filter((k) => !known.has(k));
  if (unknown.length > 0) return `unknown key ${unknown.map((k) => JSON.stringify(k)).join(', ')} (known: ${[...known].join(', ')})`;
  if (typeof b.route !== 'string' || b.route === '') return 'route must name a webhook route';
  if (b.destination !== undefined && typeof b.destination !== 'string') return 'destination must be a string';
  const time = (key: 'from' | 'to'): number | string => {
    const v = b[key];
    const ms = typeof v === 'string' && RFC3339.test(v) ? Date.parse(v) : NaN;
    return Number.isFinite(ms) ? ms : `${key} must be an RFC 3339 time such as 2026-12-07T00:00:00Z`;
  };
  const from = time('from');
  if (typeof from === 'string') return from;
  const to = time('to');
  if (typeof to === 'string') return to;
  if (to <= from) return 'to must be later than from';
  const status = b.status ?? 'any';
  if (status !== 'delivered' && status !== 'dead' && status !== 'any') return 'status must be "delivered", "dead" or "any"';
  if (b.dryRun !== undefined && typeof b.dryRun !== 'boolean') return 'dryRun must be true or false';
  return { route: b.route, destination: b.destination, from, to, status, dryRun: b.dryRun === true };
}


/** Credentials a provider may send along (basic auth on the webhook URL) are not shown even with inspect. */
function redactHeaders(headers: readonly string[]): string[] {
  return headers.map((v, i) => {
    if (i % 2 === 0) return v;
    const name = headers[i - 1]!.toLowerCase();
    return name === 'authorization' || name === 'proxy-authorization' || name === 'cookie' ? REDACTED : v;
  });
}
