import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { answer, type AdminRoute } from '../core/admin.js';
import type { Clock } from '../core/clock.js';
import { GatehouseError, UpstreamError } from '../core/errors.js';
import type { Exchange } from '../core/exchange.js';
import { findHeader } from '../core/headers.js';
import { readKey } from '../core/key-source.js';
import { ATTR } from '../core/names.js';
import type { AttemptResult, Policy } from '../core/send.js';
import type { UpstreamResult } from '../core/upstream.js';
import { fingerprint } from '../config/fingerprint.js';
import type { Config, OutboxConfig, RouteConfig } from '../config/schema.js';
import { callbackPayload, sendCallback } from './callback.js';
import type { DeliveryEngine, DeliveryTarget } from './engine.js';
import { CALLBACK, publicState, UPSTREAM, type DeliveryState, type DeliveryStore, type NewDelivery, type StoredDelivery } from './store.js';
import type { DeliveryPolicy, DeliveryWorker, Verdict, WorkerObserver } from './worker.js';

/*
 * The outbox (SPEC §11): a route's `delivery` block makes gatehouse take responsibility for a
 * write. `async` stores the request durably and answers 202; `fallback` sends it at once and
 * stores it only when the upstream gave no usable answer (or a 5xx/429). The engine then
 * delivers it through the route's upstream (the same dispatch as live traffic: breaker,
 * credentials, TLS), with one Idempotency-Key on every try, until a 2xx, a final 4xx or maxAge.
 */

export interface OutboxObserver extends WorkerObserver {
  /** A request was stored: `mode` says how it got there. */
  accepted(route: string, mode: 'async' | 'fallback'): void;
  /** The accepting request's span as a traceparent, stored so delivery spans link to it. */
  traceparent(ex: Exchange): string | undefined;
}

export interface OutboxDeps {
  readonly engine: DeliveryEngine;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly observer: OutboxObserver;
}

export interface OutboxCompileInput {
  readonly route: RouteConfig;
  readonly target: DeliveryTarget;
  readonly config: Config;
  readonly isDraining: () => boolean;
}

/** An outbox route of one compiled plan: the policy around its sending, and its runtime. */
export interface OutboxRoute {
  readonly name: string;
  /** Outermost policy of the route: stores (async) or falls back (fallback) for `delivery.methods`. */
  readonly policy: Policy;
  readonly target: DeliveryTarget;
  readonly runtime: OutboxRuntime;
}

/** What outlives a reload: the route's store and workers, keyed by name + fingerprint. */
interface OutboxRuntime {
  readonly name: string;
  readonly key: string;
  readonly cfg: OutboxConfig;
  readonly storeName: string;
  store(): DeliveryStore;
  target: DeliveryTarget | undefined;
  readonly workers: readonly DeliveryWorker[];
  readonly upstreamWorker: DeliveryWorker;
}

export interface OutboxRegistry {
  compile(input: OutboxCompileInput): OutboxRoute;
  /** Once a plan is live: its routes' workers deliver, the rest stop (their messages wait in the store). */
  activate(routes: readonly OutboxRoute[]): void;
  /** `/admin/outbox...` (SPEC §9, §11). */
  readonly adminRoutes: readonly AdminRoute[];
  close(graceMs: number): Promise<void>;
}

/** Headers a stored request never keeps: its framing (the body goes whole) and the trace context (each try has its own). */
const NOT_STORED = new Set(['content-length', 'host', 'traceparent', 'tracestate', 'gatehouse-outbox-id']);

/** Outcomes of the live try that make `fallback` store the request: no usable answer. */
const FALLBACK_CODES = new Set(['bad_gateway', 'upstream_timeout', 'circuit_open', 'no_healthy_upstream', 'overloaded', 'auth_unavailable']);

/** SPEC §11: 2xx delivered; 408, 425, 429, 5xx and no answer retried; any other answer final. */
export function outboxVerdict(result: UpstreamResult): Verdict {
  if (result.failure !== undefined) return 'retry';
  const s = result.status;
  if (s >= 200 && s <= 299) return 'delivered';
  if (s === 408 || s === 425 || s === 429 || s >= 500) return 'retry';
  return 'final';
}

const fallsBackOn = (status: number) => status === 429 || status >= 500;

export function createOutboxRegistry(deps: OutboxDeps): OutboxRegistry {
  const { engine, clock, logger, observer } = deps;
  const active = new Map<string, OutboxRuntime>();
  let closed = false;

  function createRuntime(name: string, key: string, cfg: OutboxConfig, storeName: string): OutboxRuntime {
    let store: DeliveryStore | undefined;
    const callback = cfg.callback;
    const common = { deadLetter: true, keepBody: false, backoff: cfg.backoff, attempts: undefined };
    const upstreamPolicy: DeliveryPolicy = {
      ...common,
      verdict: outboxVerdict,
      // the callback is added in the same step that finishes the message: a crash loses neither
      finished:
        callback === undefined
          ? undefined
          : (d, outcome, result, error): NewDelivery[] => [
              { destination: CALLBACK, payload: callbackPayload(d, outcome, result, error), expiresAt: clock.now() + cfg.maxAge },
            ],
    };
    const runtime: OutboxRuntime = {
      name,
      key,
      cfg,
      storeName,
      store: () => (store ??= engine.store(storeName, name)),
      target: undefined,
      workers: [],
      upstreamWorker: undefined as unknown as DeliveryWorker,
    };
    const timeoutMs = () => runtime.target?.timeoutMs ?? 30_000;
    const upstreamWorker = engine.worker({
      route: name,
      destination: UPSTREAM,
      concurrency: cfg.concurrency,
      policy: upstreamPolicy,
      store: () => runtime.store(),
      send: (d, signal) => sendToUpstream(runtime, d, signal),
      timeoutMs,
      observer,
      countDead: true,
    });
    const workers = [upstreamWorker];
    if (callback !== undefined) {
      const secret = callback.secret.reveal();
      workers.push(
        engine.worker({
          route: name,
          destination: CALLBACK,
          concurrency: cfg.concurrency,
          // retried until the store acknowledges it with a 2xx (or maxAge passes)
          policy: { ...common, verdict: (r) => (r.failure === undefined && r.status >= 200 && r.status <= 299 ? 'delivered' : 'retry') },
          store: () => runtime.store(),
          send: (d, signal) => sendCallback(callback.url, secret, d, clock.now(), timeoutMs(), signal).then((result) => ({ result, upstream: 'callback', path: callback.url })),
          timeoutMs,
          observer,
        }),
      );
    }
    return Object.assign(runtime, { workers, upstreamWorker });
  }

  /** One try of a stored request: the route's upstream, as it is configured now. */
  function sendToUpstream(runtime: OutboxRuntime, d: StoredDelivery, signal: AbortSignal) {
    const target = runtime.target;
    if (target === undefined) return undefined;
    return target.upstream
      .call({
        route: d.route,
        method: d.method,
        target: d.path,
        headers: d.headers,
        body: d.method === 'GET' || d.method === 'HEAD' ? null : d.body,
        host: target.host === 'preserve' ? findHeader(d.headers, 'x-forwarded-host') : target.host,
        timeoutMs: target.timeoutMs,
        signal,
        resends: d.attempts - 1,
        link: d.trace,
        attributes: { [ATTR.outboxId]: d.id, [ATTR.outboxAttempt]: d.attempts },
        maxBodyBytes: runtime.cfg.callback === undefined ? 0 : 64 * 1024,
      })
      .then((result) => ({ result, upstream: target.upstream.name, path: d.path }));
  }

  /** Stores the request and answers 202; a store that cannot take it answers 503 store_unavailable. */
  async function accept(ex: Exchange, rt: OutboxRuntime, route: OutboxRoute, mode: 'async' | 'fallback', body: Buffer, key: string, live?: { status: number; error: string }): Promise<AttemptResult> {
    const now = clock.now();
    const id = randomUUID();
    const headers: string[] = [];
    const out = ex.outHeaders;
    for (let i = 0; i + 1 < ex.outHeaderBase; i += 2) if (!NOT_STORED.has(out[i]!.toLowerCase())) headers.push(out[i]!, out[i + 1]!);
    const cfg = rt.cfg;
    const orderKey = orderKeyOf(ex, cfg, body);
    try {
      await rt.store().accept(
        { id, route: rt.name, kind: 'outbox', createdAt: now, method: ex.method, path: ex.target, headers, body, requestId: ex.requestId, trace: observer.traceparent(ex), idempotencyKey: key },
        [{ destination: UPSTREAM, orderKey, expiresAt: now + cfg.maxAge, attempts: ex.attempts, lastError: live?.error, lastStatus: live?.status || undefined }],
        now,
      );
    } catch (err) {
      logger.error({ route: rt.name, err: (err as Error).message }, 'could not store an outbox message; the client was told to retry');
      throw new GatehouseError('store_unavailable', 'the request could not be stored durably; nothing was accepted, try again later', { 'retry-after': '5' });
    }
    observer.accepted(rt.name, mode);
    ex.event('gatehouse.outbox.stored', { [ATTR.outboxId]: id, 'gatehouse.outbox.mode': mode });
    const text = JSON.stringify({ id, status: 'pending', idempotencyKey: key });
    const res = ex.res;
    if (res.headersSent || res.destroyed) return { statusCode: 202, rawHeaders: [], committed: true };
    const reply = [
      'content-type', 'application/json',
      'content-length', String(Buffer.byteLength(text)),
      'cache-control', 'no-store',
      'gatehouse-outbox-id', id,
      'idempotency-key', key,
      'x-request-id', ex.requestId,
    ];
    if (ex.responseHeaders !== undefined) reply.push(...ex.responseHeaders);
    if (isDraining(route)) reply.push('connection', 'close');
    ex.status = 202;
    res.writeHead(202, reply);
    res.end(text);
    rt.upstreamWorker.notify();
    return { statusCode: 202, rawHeaders: [], committed: true };
  }

  const draining = new WeakMap<OutboxRoute, () => boolean>();
  const isDraining = (route: OutboxRoute) => draining.get(route)?.() ?? false;

  function compilePolicy(route: OutboxRoute, input: OutboxCompileInput): Policy {
    const rt = route.runtime;
    const { cfg } = rt;
    const methods = new Set<string>(cfg.methods);
    const generates = input.route.idempotencyKey === 'generate';
    const mode = cfg.mode as 'async' | 'fallback';
    return (next) =>
      async function withOutbox(ex: Exchange): Promise<AttemptResult> {
        if (!methods.has(ex.method)) return next(ex);
        const body = await readWhole(ex.body);
        ex.body = body;
        if (mode === 'async') {
          return accept(ex, rt, route, 'async', body, ensureKey(ex));
        }
        // fallback: only requests that carry (or will be given) an Idempotency-Key may be tried twice
        const hasKey = findHeader(ex.outHeaders, 'idempotency-key') !== undefined || (generates && (ex.method === 'POST' || ex.method === 'PATCH'));
        if (!hasKey) return next(ex);
        // an earlier message with the same ordering key still waits: this one queues behind it
        const orderKey = orderKeyOf(ex, cfg, body);
        if (orderKey !== undefined && (await rt.store().busy(rt.name, UPSTREAM, orderKey).catch(() => false))) {
          return accept(ex, rt, route, 'fallback', body, ensureKey(ex));
        }
        let held = 0;
        ex.fallback = (_ex, status) => {
          if (!fallsBackOn(status)) return false;
          held = status;
          return true;
        };
        let result: AttemptResult;
        try {
          result = await next(ex);
        } catch (err) {
          const code = err instanceof GatehouseError ? err.code : err instanceof UpstreamError && err.kind !== 'aborted' ? 'bad_gateway' : undefined;
          if (code === undefined || !FALLBACK_CODES.has(code) || ex.res.headersSent || ex.cancelled === 'aborted') throw err;
          return accept(ex, rt, route, 'fallback', body, ensureKey(ex), { status: 0, error: (err as Error).message });
        } finally {
          ex.fallback = undefined;
        }
        if (result.committed || held === 0) return result;
        return accept(ex, rt, route, 'fallback', body, ensureKey(ex), { status: held, error: `HTTP ${held}` });
      };
  }

  const adminRoutes: AdminRoute[] = [
    {
      method: 'GET',
      path: '/admin/outbox',
      async handle({ query }) {
        const status = query.get('status');
        const route = query.get('route') ?? undefined;
        if (status !== null && !Object.hasOwn(STATES, status)) {
          return answer(400, { error: `status must be one of ${Object.keys(STATES).join(', ')} (got "${status}")` });
        }
        const states = status === null ? undefined : STATES[status as keyof typeof STATES];
        const seen = new Map<string, StoredDelivery>();
        for (const store of storesInUse()) {
          for (const d of await store.list({ kind: 'outbox', route, states, destination: UPSTREAM, limit: 100 })) seen.set(d.id, d);
        }
        const messages = [...seen.values()].sort((a, b) => b.createdAt - a.createdAt).slice(0, 100);
        return answer(200, { messages: messages.map(messageView) });
      },
    },
    {
      method: 'GET',
      path: '/admin/outbox/:id',
      async handle({ params }) {
        const found = await find(params.id!);
        return found === undefined ? notFound(params.id!) : answer(200, messageView(found.d));
      },
    },
    {
      method: 'POST',
      path: '/admin/outbox/:id/replay',
      async handle({ params }) {
        const id = params.id!;
        const found = await find(id);
        if (found === undefined) return notFound(id);
        if (found.d.state !== 'dead') return answer(409, { error: `outbox message ${id} is ${publicState(found.d.state)}, not dead: only a dead message is replayed`, status: publicState(found.d.state) });
        const replayed = await found.store.replay({ id, destination: UPSTREAM }, clock.now());
        if (replayed === undefined) return answer(409, { error: `outbox message ${id} is no longer dead` });
        active.get(replayed.route)?.upstreamWorker.notify();
        return answer(202, messageView(replayed));
      },
    },
    {
      method: 'DELETE',
      path: '/admin/outbox/:id',
      async handle({ params }) {
        const id = params.id!;
        const found = await find(id);
        if (found === undefined) return notFound(id);
        const cancelled = publicState(found.d.state) === 'pending' ? await found.store.cancel({ id, destination: UPSTREAM }, clock.now()) : undefined;
        if (cancelled === undefined) return answer(409, { error: `outbox message ${id} is ${publicState(found.d.state)}, not pending: only a pending message is cancelled`, status: publicState(found.d.state) });
        logger.info({ route: cancelled.route, id }, 'outbox message cancelled from the admin API');
        return answer(204);
      },
    },
  ];

  function storesInUse(): DeliveryStore[] {
    return [...new Set([...active.values()].map((r) => r.store()))];
  }

  async function find(id: string): Promise<{ d: StoredDelivery; store: DeliveryStore } | undefined> {
    for (const store of storesInUse()) {
      const d = (await store.get(id)).find((x) => x.destination === UPSTREAM && x.kind === 'outbox');
      if (d !== undefined) return { d, store };
    }
    return undefined;
  }

  return {
    compile(input) {
      const { route } = input;
      const cfg = route.delivery!;
      const storeName = cfg.store ?? engine.defaultStore(input.config);
      const storeConfig = Object.hasOwn(input.config.stores, storeName) ? input.config.stores[storeName] : null;
      const key = `${route.name}:${fingerprint(cfg)}:${storeName}:${fingerprint([storeConfig, input.config.dataDir])}`;
      const current = active.get(route.name);
      const runtime = current?.key === key ? current : createRuntime(route.name, key, cfg, storeName);
      const compiled: { -readonly [K in keyof OutboxRoute]: OutboxRoute[K] } = { name: route.name, policy: undefined as unknown as Policy, target: input.target, runtime };
      draining.set(compiled, input.isDraining);
      compiled.policy = compilePolicy(compiled, input);
      return compiled;
    },

    activate(routes) {
      if (closed) return;
      const next = new Map(routes.map((r) => [r.name, r]));
      for (const [name, runtime] of active) {
        if (next.get(name)?.runtime !== runtime) {
          active.delete(name);
          for (const w of runtime.workers) void w.stop(runtime.target?.timeoutMs ?? 0);
        }
      }
      for (const r of routes) {
        r.runtime.target = r.target;
        if (active.get(r.name) === r.runtime) continue;
        active.set(r.name, r.runtime);
        try {
          if (!r.runtime.store().durable) logger.warn({ route: r.name }, 'outbox messages of this route are not durable (memory store)');
        } catch (err) {
          logger.error({ route: r.name, store: r.runtime.storeName, err: (err as Error).message }, 'cannot open the outbox store');
        }
        for (const w of r.runtime.workers) w.start();
      }
    },

    adminRoutes,

    async close(graceMs) {
      closed = true;
      const runtimes = [...active.values()];
      active.clear();
      await Promise.allSettled(runtimes.flatMap((r) => r.workers.map((w) => w.stop(graceMs))));
    },
  };
}

/** `?status=` of the admin list, as the delivery states it covers. */
const STATES: Readonly<Record<'pending' | 'delivered' | 'dead' | 'cancelled', readonly DeliveryState[]>> = {
  pending: ['pending', 'waiting', 'delivering'],
  delivered: ['delivered'],
  dead: ['dead'],
  cancelled: ['cancelled'],
};

const notFound = (id: string) => answer(404, { error: `no outbox message with id ${id}` });
const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** SPEC §11: every key present, null where unknown. */
function messageView(d: StoredDelivery) {
  return {
    id: d.id,
    route: d.route,
    status: publicState(d.state),
    attempts: d.attempts,
    createdAt: iso(d.createdAt),
    nextAttemptAt: d.state === 'pending' ? iso(d.nextAt) : null,
    lastError: d.lastError ?? null,
    lastStatus: d.lastStatus ?? null,
    idempotencyKey: d.idempotencyKey ?? null,
  };
}

/**
 * The request's Idempotency-Key (the client's, or the one the route generated for the live try);
 * one is generated when it has none. It is part of the stored headers: every try carries it.
 */
function ensureKey(ex: Exchange): string {
  let key = findHeader(ex.outHeaders, 'idempotency-key');
  if (key === undefined) {
    key = randomUUID();
    ex.outHeaders.length = ex.outHeaderBase;
    ex.outHeaders.push('idempotency-key', key);
    ex.outHeaderBase = ex.outHeaders.length;
  }
  return key;
}

function orderKeyOf(ex: Exchange, cfg: OutboxConfig, body: Buffer): string | undefined {
  if (cfg.orderBy === undefined) return undefined;
  let parsed: { value: unknown } | undefined;
  return readKey(
    {
      header: (name) => ex.header(name),
      json() {
        if (parsed === undefined) {
          try {
            parsed = { value: JSON.parse(body.toString('utf8')) as unknown };
          } catch {
            parsed = { value: undefined };
          }
        }
        return parsed.value;
      },
    },
    cfg.orderBy,
  );
}

/** The whole request body; the pipeline bounds it by the route's maxBodyBytes (413) before it gets here. */
async function readWhole(body: Readable | Buffer | null): Promise<Buffer> {
  if (body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}
