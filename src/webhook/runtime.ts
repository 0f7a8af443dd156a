import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { answer, type AdminRoute } from '../core/admin.js';
import { fingerprint } from '../config/fingerprint.js';
import { REDACTED } from '../config/secret.js';
import type { Config, RouteConfig, WebhookConfig } from '../config/schema.js';
import type { Exchange, Stage } from '../core/exchange.js';
import type { Clock } from '../core/clock.js';
import { DEFAULT_SQLITE_STORE, type SqliteDatabase, type StoreRegistry } from '../stores/stores.js';
import { createDeliveryWorker, type DeliveryObserver, type DeliveryTarget, type DeliveryWorker } from './delivery.js';
import { compileIntake, deliveryHeaderPlan, type IntakeObserver } from './intake.js';
import type { RequestHeaderPlan } from '../core/forwarding.js';
import type { StoredEvent, WebhookStore } from './store.js';
import { createRedisWebhookStore } from './store-redis.js';
import { sqliteWebhookStore } from './store-sqlite.js';
import { compileHeaderCheck, compileVerifier } from './verify.js';

export type WebhookObserver = IntakeObserver & DeliveryObserver;

/** A webhook route of one compiled plan: its intake (admission stage, handler), and where its events go. */
export interface WebhookRoute {
  readonly name: string;
  readonly admit: Stage;
  readonly handler: (ex: Exchange) => void;
  readonly target: DeliveryTarget;
  readonly runtime: WebhookRuntime;
}

/** What outlives a reload: the route's store and delivery worker, keyed by name + fingerprint. */
interface WebhookRuntime {
  readonly name: string;
  readonly key: string;
  readonly cfg: WebhookConfig;
  readonly storeName: string;
  store(): WebhookStore;
  target: DeliveryTarget | undefined;
  readonly worker: DeliveryWorker;
  /** Intake bodies being read now (`webhook.maxConcurrent`): shared by the plans of a reload. */
  readonly reading: { active: number };
}

export interface WebhookRegistryDeps {
  readonly stores: StoreRegistry;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly logger: Logger;
  readonly observer: WebhookObserver;
}

export interface WebhookCompileInput {
  readonly route: RouteConfig;
  readonly target: DeliveryTarget;
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

/** `dedupe.store` when set; else the first sqlite store defined; else `<dataDir>/gatehouse.db`. */
function webhookDefaultStore(config: Config): string {
  return Object.entries(config.stores).find(([, s]) => s.type === 'sqlite')?.[0] ?? DEFAULT_SQLITE_STORE;
}

export function createWebhookRegistry(deps: WebhookRegistryDeps): WebhookRegistry {
  const { stores, logger, observer } = deps;
  /** Lease owner id of this process: replicas (and restarts) never share one. */
  const owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const active = new Map<string, WebhookRuntime>();
  const memoryDbs = new Map<string, SqliteDatabase>();
  let closed = false;

  function openStore(name: string, route: string): WebhookStore {
    const cfg = stores.config(name);
    switch (cfg?.type) {
      case 'redis':
        return createRedisWebhookStore(stores.redis(name));
      case 'memory': {
        let db = memoryDbs.get(name);
        if (db === undefined) {
          db = new Database(':memory:');
          memoryDbs.set(name, db);
          logger.warn({ store: name, route }, `webhook route '${route}' keeps its events in memory store '${name}': they are lost when gatehouse stops (not durable)`);
        }
        return sqliteWebhookStore(db, false);
      }
      case 'sqlite':
      case undefined:
        return sqliteWebhookStore(stores.sqlite(name), true, stores.sqliteHealth(name));
    }
  }

  function createRuntime(name: string, key: string, cfg: WebhookConfig, storeName: string): WebhookRuntime {
    let store: WebhookStore | undefined;
    const runtime: WebhookRuntime = {
      name,
      key,
      cfg,
      storeName,
      // opened on first use (activation), after the registry of stores has adopted the new config
      store: () => (store ??= openStore(storeName, name)),
      target: undefined,
      reading: { active: 0 },
      worker: createDeliveryWorker({
        route: name,
        cfg,
        store: () => runtime.store(),
        owner,
        target: () => runtime.target,
        clock: deps.clock,
        rand: deps.rand,
        observer,
        logger,
      }),
    };
    return runtime;
  }

  const storesInUse = (): WebhookStore[] => [...new Set([...active.values()].map((r) => r.store()))];

  /** `/admin/webhooks/...` (SPEC §9): what is dead, replaying one, the latest events. */
  const adminRoutes: AdminRoute[] = [
    {
      method: 'GET',
      path: '/admin/webhooks/dead',
      async handle() {
        const seen = new Map<string, StoredEvent>();
        for (const store of storesInUse()) for (const ev of await store.listDead()) seen.set(ev.id, ev);
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
          const ev = (await store.listDead()).find((e) => e.id === id);
          if (ev === undefined) continue;
          const runtime = active.get(ev.route);
          if (runtime === undefined) return answer(409, { error: `route '${ev.route}' of event ${id} is not configured: nowhere to deliver it` });
          await store.replay(id, deps.clock.now());
          runtime.worker.notify();
          return answer(202, { id, route: ev.route, eventId: ev.eventId, status: 'replaying' });
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
        for (const r of runtimes) for (const ev of await r.store().recent(r.name, limit)) events.push(recentView(ev, r.cfg.inspect));
        return answer(200, { events });
      },
    },
  ];

  return {
    compile(input) {
      const { route } = input;
      const cfg = route.webhook!;
      const storeName = cfg.dedupe.store ?? webhookDefaultStore(input.config);
      const storeConfig = Object.hasOwn(input.config.stores, storeName) ? input.config.stores[storeName] : null;
      const key = `${route.name}:${fingerprint(cfg)}:${storeName}:${fingerprint([storeConfig, input.config.dataDir])}`;
      const current = active.get(route.name);
      const runtime = current?.key === key ? current : createRuntime(route.name, key, cfg, storeName);
      const intake = compileIntake({
        route: route.name,
        cfg,
        checkHeaders: compileHeaderCheck(cfg),
        verify: compileVerifier(cfg),
        reading: runtime.reading,
        store: () => runtime.store(),
        stored: () => runtime.worker.notify(),
        headers: deliveryHeaderPlan(input.requestHeaders),
        clock: deps.clock,
        observer,
        logger,
        isDraining: input.isDraining,
      });
      return { name: route.name, admit: intake.admit, handler: intake.handler, target: input.target, runtime };
    },

    activate(routes) {
      if (closed) return;
      const next = new Map(routes.map((r) => [r.name, r]));
      for (const [name, runtime] of active) {
        if (next.get(name)?.runtime !== runtime) {
          active.delete(name);
          void runtime.worker.stop(runtime.target?.timeoutMs ?? 0);
        }
      }
      for (const r of routes) {
        r.runtime.target = r.target;
        if (active.get(r.name) === r.runtime) continue;
        active.set(r.name, r.runtime);
        try {
          const store = r.runtime.store();
          if (!store.durable) logger.warn({ route: r.name }, 'webhook events of this route are not durable');
        } catch (err) {
          logger.error({ route: r.name, store: r.runtime.storeName, err: (err as Error).message }, 'cannot open the webhook store');
        }
        r.runtime.worker.start();
      }
    },

    adminRoutes,

    async close(graceMs) {
      closed = true;
      const runtimes = [...active.values()];
      active.clear();
      await Promise.allSettled(runtimes.map((r) => r.worker.stop(graceMs)));
      for (const db of memoryDbs.values()) db.close();
      memoryDbs.clear();
    },
  };
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** What every admin view shows of an event. */
const eventView = (ev: StoredEvent) => ({
  id: ev.id,
  route: ev.route,
  provider: ev.provider,
  eventId: ev.eventId,
  receivedAt: iso(ev.receivedAt),
  attempts: ev.attempts,
  lastError: ev.lastError ?? null,
});

function deadView(ev: StoredEvent) {
  return { ...eventView(ev), deadAt: iso(ev.deadAt), state: ev.state === 'dead' ? 'dead' : 'replaying' };
}

function recentView(ev: StoredEvent, inspect: boolean) {
  return {
    ...eventView(ev),
    state: ev.state,
    nextAttemptAt: ev.state === 'pending' ? iso(ev.nextAt) : null,
    deliveredAt: iso(ev.deliveredAt),
    requestId: ev.requestId,
    ...(inspect ? { headers: redactHeaders(ev.headers), body: ev.body.toString('utf8') } : {}),
  };
}


/** Credentials a provider may send along (basic auth on the webhook URL) are not shown even with inspect. */
function redactHeaders(headers: readonly string[]): string[] {
  return headers.map((v, i) => {
    if (i % 2 === 0) return v;
    const name = headers[i - 1]!.toLowerCase();
    return name === 'authorization' || name === 'proxy-authorization' || name === 'cookie' ? REDACTED : v;
  });
}
