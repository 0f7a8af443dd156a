import type { Logger } from 'pino';
import { answer, type AdminRoute } from '../core/admin.js';
import { fingerprint } from '../config/fingerprint.js';
import { REDACTED } from '../config/secret.js';
import type { Config, RouteConfig, WebhookConfig } from '../config/schema.js';
import type { Exchange, Stage } from '../core/exchange.js';
import type { Clock } from '../core/clock.js';
import { findHeader } from '../core/headers.js';
import { ATTR } from '../core/names.js';
import type { DeliveryEngine, DeliveryTarget } from '../delivery/engine.js';
import type { DeliveryStore, StoredDelivery } from '../delivery/store.js';
import type { DeliveryPolicy, DeliveryWorker, Sent, WorkerObserver } from '../delivery/worker.js';
import { compileIntake, deliveryHeaderPlan, type IntakeObserver } from './intake.js';
import type { RequestHeaderPlan } from '../core/forwarding.js';
import { compileHeaderCheck, compileVerifier } from './verify.js';

export type WebhookObserver = IntakeObserver & WorkerObserver;

/** The destination of a route's own upstream (a fan-out adds others). */
const UPSTREAM = 'upstream';

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
  store(): DeliveryStore;
  target: DeliveryTarget | undefined;
  readonly worker: DeliveryWorker;
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

  /** A webhook delivery: the stored request, rewritten for the route, with gatehouse's own headers. */
  function send(runtime: WebhookRuntime, d: StoredDelivery, signal: AbortSignal): Promise<Sent> | undefined {
    const target = runtime.target;
    if (target === undefined) return undefined;
    const q = d.path.indexOf('?');
    const path = q < 0 ? target.rewrite(d.path) : target.rewrite(d.path.slice(0, q)) + d.path.slice(q);
    const eventId = d.eventId ?? '';
    return target.upstream
      .call({
        route: d.route,
        method: d.method,
        target: path,
        headers: [...d.headers, 'gatehouse-webhook-id', d.id, 'gatehouse-webhook-event-id', eventId, 'gatehouse-webhook-attempt', String(d.attempts)],
        body: d.body,
        host: target.host === 'preserve' ? findHeader(d.headers, 'x-forwarded-host') : target.host,
        timeoutMs: target.timeoutMs,
        signal,
        resends: d.attempts - 1,
        link: d.trace,
        attributes: { [ATTR.webhookId]: d.id, [ATTR.webhookEventId]: eventId, [ATTR.webhookAttempt]: d.attempts },
        maxBodyBytes: 0,
      })
      .then((result) => ({ result, upstream: target.upstream.name, path }));
  }

  function createRuntime(name: string, key: string, cfg: WebhookConfig, storeName: string): WebhookRuntime {
    let store: DeliveryStore | undefined;
    const { attempts, backoff, deadLetter, concurrency } = cfg.delivery;
    const policy: DeliveryPolicy = {
      attempts,
      backoff,
      deadLetter,
      keepBody: cfg.inspect,
      // a 2xx from the store counts as delivered; anything else is tried again while attempts last
      verdict: (result) => (result.failure === undefined && result.status >= 200 && result.status <= 299 ? 'delivered' : 'retry'),
    };
    const runtime: WebhookRuntime = {
      name,
      key,
      cfg,
      storeName,
      // opened on first use (activation), after the registry of stores has adopted the new config
      store: () => (store ??= engine.store(storeName, name)),
      target: undefined,
      reading: { active: 0 },
      worker: engine.worker({
        route: name,
        destination: UPSTREAM,
        concurrency,
        policy,
        store: () => runtime.store(),
        send: (d, signal) => send(runtime, d, signal),
        timeoutMs: () => runtime.target?.timeoutMs ?? 30_000,
        observer,
      }),
    };
    return runtime;
  }

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
          const ev = (await store.listDead('webhook')).find((e) => e.id === id);
          if (ev === undefined) continue;
          const runtime = active.get(ev.route);
          if (runtime === undefined) return answer(409, { error: `route '${ev.route}' of event ${id} is not configured: nowhere to deliver it` });
          await store.replay({ id, destination: ev.destination }, deps.clock.now());
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
        for (const r of runtimes) for (const ev of await r.store().list({ kind: 'webhook', route: r.name, destination: UPSTREAM, limit })) events.push(recentView(ev, r.cfg.inspect));
        return answer(200, { events });
      },
    },
  ];

  return {
    compile(input) {
      const { route } = input;
      const cfg = route.webhook!;
      const storeName = cfg.dedupe.store ?? engine.defaultStore(input.config);
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
  return { ...eventView(ev), deadAt: iso(ev.deadAt), state: ev.state === 'dead' ? 'dead' : 'replaying' };
}

function recentView(ev: StoredDelivery, inspect: boolean) {
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
