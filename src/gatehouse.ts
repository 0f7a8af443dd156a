import type { AddressInfo } from 'node:net';
import { pino, type DestinationStream, type Logger } from 'pino';
import { startAdminServer, type AdminSource, type ReloadResult } from './admin/server.js';
import { answer } from './core/admin.js';
import { ConfigError, formatProblem } from './config/errors.js';
import { fingerprint } from './config/fingerprint.js';
import type { LoadedConfig } from './config/load.js';
import { loadConfigOffThread } from './config/load-off-thread.js';
import { fileVersion, watchFiles, type FileWatch } from './config/watch.js';
import { cachesView, compilePlan, retiredUpstreams, type Plan, type PlanDeps, type PlanObservers } from './proxy/plan.js';
import { retireQuotaStores } from './quota/quota.js';
import type { PipelineDeps, ProxyState } from './proxy/lifecycle.js';
import { createListeners } from './proxy/server.js';
import { systemClock } from './core/clock.js';
import { createStoreRegistry } from './stores/stores.js';
import { METRICS } from './core/names.js';
import { createAccessLog, noAccessLog } from './telemetry/access-log.js';
import { createMetrics } from './telemetry/metrics.js';
import { createBudgetObserver, observeBudgets } from './telemetry/budget-observer.js';
import { createAuthObserver } from './telemetry/auth-observer.js';
import { createQuotaObserver } from './telemetry/quota-observer.js';
import { createResilienceObserver, observeUpstreams } from './telemetry/resilience-observer.js';
import { createCacheObserver } from './telemetry/cache-observer.js';
import { bridgeOtelDiagnostics } from './telemetry/diagnostics.js';
import { createLogger } from './telemetry/log.js';
import { readOtelSettings, withOtelEnv } from './telemetry/otel-env.js';
import { detectResource, settleResource } from './telemetry/resource.js';
import { createTracing } from './telemetry/tracing.js';
import { createWebhookObserver } from './telemetry/webhook-observer.js';
import { createWebhookRegistry } from './webhook/runtime.js';
import { createDeliveryEngine } from './delivery/engine.js';
import { createOutboxRegistry } from './delivery/outbox.js';
import { createOutboxObserver } from './telemetry/outbox-observer.js';
import { VERSION } from './core/version.js';

/** The longest shutdown waits for pending spans and metrics to reach the collector (SPEC §1). */
const FLUSH_MS = 2_000;

export interface StartOptions {
  readonly configFile: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Access-log lines (default: stdout). */
  readonly accessLogStream?: DestinationStream;
  /** The longest an access-log line waits to be written with others (default 20 ms; 0: end of the event-loop turn). */
  readonly accessLogFlushMs?: number;
  /** gatehouse's own log (default: stderr). */
  readonly logStream?: DestinationStream;
  /**
   * Load the first config in a worker thread too, as every reload is (the CLI does): a file that
   * would exhaust memory is then refused with a located problem. Default false: nothing serves yet.
   */
  readonly loadOffThread?: boolean;
  /** Reload when the config file changes (default: true). */
  readonly watch?: boolean;
  readonly watchIntervalMs?: number;
}

export interface Gatehouse {
  readonly logger: Logger;
  readonly adminAddress: AddressInfo;
  listenerAddress(name: string): AddressInfo | undefined;
  currentPlan(): Plan;
  /** Loads the config file again; an invalid one is rejected and the running plan stays. */
  reload(trigger: 'signal' | 'admin' | 'watch' | 'api'): Promise<ReloadResult>;
  /** SPEC §1 shutdown: not ready, stop accepting, drain, flush telemetry. Resolves when done. */
  shutdown(): Promise<void>;
}

/** Starts gatehouse from a config file; throws ConfigError (every problem) when it is invalid. */
export async function startGatehouse(options: StartOptions): Promise<Gatehouse> {
  const env = options.env ?? process.env;
  const file = options.configFile;
  const firstVersion = fileVersion(file); // before reading: a change from here on is seen by the watcher
  // in this thread only when asked: the schema (zod) and the YAML parser stay out of the serving thread
  const first = options.loadOffThread === true ? await loadConfigOffThread(file, { env }) : (await import('./config/load.js')).loadConfigFile(file, { env });
  const { config } = first;

  // the OTEL_* variables are read before the logger exists (they may set nothing it needs, but
  // GATEHOUSE_LOG_LEVEL is read with them): their warnings wait for it
  const warnings: { variable: string; message: string }[] = [];
  const otel = readOtelSettings(config.telemetry, env, (variable, message) => warnings.push({ variable, message }));
  const logger = createLogger(otel.logLevel, options.logStream ?? pino.destination(2));
  for (const { variable, message } of warnings) logger.warn({ variable }, message);
  const restoreDiagnostics = bridgeOtelDiagnostics(logger, () => systemClock.now());
  // the SDK reads its own OTEL_* variables (exporters, resource) as these are built
  const resource = withOtelEnv(env, () => detectResource(otel.serviceName));
  // host.id is read asynchronously; until it is settled the SDK warns on every read of the resource
  await settleResource(resource);
  const { tracing, metrics } = withOtelEnv(env, () => ({ tracing: createTracing(otel.traces, resource), metrics: createMetrics(otel.metrics, resource) }));
  // Buffered for throughput, flushed at least every second so a quiet sidecar's lines still show.
  const accessLogStream = options.accessLogStream ?? pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 1000 });
  const accessLog = config.telemetry.accessLog === 'off' ? noAccessLog : createAccessLog(accessLogStream, options.accessLogFlushMs);

  const stores = createStoreRegistry(config, logger);
  metrics.meter
    .createObservableGauge(METRICS.storeUp, { description: 'Whether each state store answers (1) or not (0).' })
    .addCallback((result) => {
      for (const [store, up] of stores.health()) result.observe(up ? 1 : 0, { store });
    });

  // one durable delivery engine for webhooks and the outbox: same stores, back-off, dead letters
  const engine = createDeliveryEngine({ stores, clock: systemClock, rand: Math.random, logger });
  const webhooks = createWebhookRegistry({
    engine,
    clock: systemClock,
    logger,
    observer: createWebhookObserver(metrics, accessLog),
  });
  const outbox = createOutboxRegistry({ engine, clock: systemClock, logger, observer: createOutboxObserver(metrics, accessLog) });

  const state: ProxyState = { plan: undefined as unknown as Plan, draining: false, inFlight: 0, onIdle: undefined };
  const observers: PlanObservers = {
    resilience: createResilienceObserver(metrics, logger),
    cache: createCacheObserver(metrics),
    quota: createQuotaObserver(metrics, logger),
    auth: createAuthObserver(metrics),
    budget: createBudgetObserver(metrics, logger),
  };
  const planDeps: PlanDeps = { tracing, metrics, logger, clock: systemClock, rand: Math.random, stores, isDraining: () => state.draining, webhooks, outbox, observers };
  const pipelineDeps: PipelineDeps = { tracing, metrics, accessLog, logger };
  state.plan = compilePlan(first, planDeps, 1);
  observeUpstreams(metrics.meter, () => state.plan.upstreams.values());
  observeBudgets(metrics, () => state.plan.budgets.budgets.values());

  const listeners = createListeners(state, pipelineDeps);

  let ready = true;
  let reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, version: 1, changed: false });

  /** The config file and what its `${file:}` references read: a change to any is a reload. */
  const watchedFiles = (configVersion: string, loaded: LoadedConfig) => new Map([[file, configVersion], ...loaded.files]);
  let watch: FileWatch | undefined;

  async function doReload(trigger: string): Promise<ReloadResult> {
    // a reload now could bind listeners again after they stopped accepting
    if (state.draining) return { ok: false, errors: ['gatehouse is shutting down'] };
    const previous = state.plan;
    const version = fileVersion(file);
    let loaded: LoadedConfig;
    try {
      // read, parsed and validated in a worker thread: traffic keeps flowing meanwhile (SPEC §3.1)
      loaded = await loadConfigOffThread(file, { env });
    } catch (err) {
      const errors = err instanceof ConfigError ? err.problems.map(formatProblem) : [String(err)];
      metrics.configReloads.add(1, { result: 'failure' });
      logger.error({ trigger, errors }, 'config reload rejected; the running config keeps serving');
      return { ok: false, errors };
    }
    watch?.set(watchedFiles(version, loaded));
    if (loaded.hash === previous.loaded.hash) return { ok: true, version: previous.version, changed: false };

    let next: Plan | undefined;
    try {
      next = compilePlan(loaded, planDeps, previous.version + 1, previous);
      const binding = await listeners.prepare(next);
      binding.commit();
    } catch (err) {
      if (next !== undefined) for (const u of retiredUpstreams(next, previous)) void u.close();
      metrics.configReloads.add(1, { result: 'failure' });
      const errors = [`${file}: ${(err as Error).message}`];
      logger.error({ trigger, errors }, 'config reload failed; the running config keeps serving');
      return { ok: false, errors };
    }
    state.plan = next;
    stores.update(loaded.config);
    retireQuotaStores(previous.quotas, next.quotas);
    webhooks.activate(next.webhooks);
    outbox.activate(next.outbox);
    for (const u of retiredUpstreams(previous, next)) {
      u.close().catch((err: unknown) => logger.warn({ upstream: u.name, err: (err as Error).message }, 'closing a retired upstream failed'));
    }
    warnInstallTimeChanges(first, loaded, logger);
    metrics.configReloads.add(1, { result: 'success' });
    logger.info({ trigger, version: next.version }, 'config reloaded');
    return { ok: true, version: next.version, changed: true };
  }

  /** One reload at a time; concurrent triggers queue behind the running one. */
  const reload = (trigger: 'signal' | 'admin' | 'watch' | 'api'): Promise<ReloadResult> => {
    reloading = reloading.then(() => doReload(trigger));
    return reloading;
  };

  /** What start opened, closed again: the end of shutdown, and a start that fails half-way. */
  async function release(deliveriesStopped: Promise<unknown>): Promise<void> {
    listeners.closeAll();
    await deliveriesStopped;
    engine.close();
    await Promise.allSettled([...state.plan.upstreams.values()].map((u) => u.close()));
    state.plan.quotas.close();
    await stores.close();
    // Pending spans and metrics get at most FLUSH_MS: a collector that is down must not hold the
    // exit (the exporters' own timeout is 10 s) — what is not sent by then is dropped.
    const flushed = Promise.allSettled([tracing?.shutdown(), metrics.shutdown()]);
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([flushed.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(resolve, FLUSH_MS, true)))]);
    clearTimeout(timer);
    if (late) logger.warn({ flushMs: FLUSH_MS }, 'telemetry not flushed in time (collector down?); pending spans and metrics dropped');
    restoreDiagnostics();
  }

  const adminSource: AdminSource = {
    isReady: () => ready && !state.draining,
    token: () => state.plan.config.admin.token,
    metrics: (_req, res) => {
      if (metrics.prometheus === undefined) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('metrics.prometheus is off\n');
        return;
      }
      metrics.prometheus().then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
      );
    },
    routes: [
      { method: 'GET', path: '/admin/config', handle: () => answer(200, { version: state.plan.version, config: state.plan.loaded.redacted }) },
      {
        method: 'GET',
        path: '/admin/upstreams',
        handle: () => answer(200, { upstreams: Object.fromEntries([...state.plan.upstreams].map(([name, u]) => [name, u.view()])) }),
      },
      {
        method: 'POST',
        path: '/admin/reload',
        async handle() {
          const result = await reload('admin');
          return result.ok ? answer(200, { version: result.version, changed: result.changed }) : answer(400, { errors: result.errors });
        },
      },
      { method: 'GET', path: '/admin/quotas', handle: () => answer(200, state.plan.quotas.view()) },
      { method: 'GET', path: '/admin/caches', handle: () => answer(200, cachesView(state.plan)) },
      { method: 'GET', path: '/admin/budgets', handle: () => answer(200, state.plan.budgets.view()) },
      ...webhooks.adminRoutes,
      ...outbox.adminRoutes,
    ],
  };

  let admin: Awaited<ReturnType<typeof startAdminServer>>;
  try {
    (await listeners.prepare(state.plan)).commit();
    webhooks.activate(state.plan.webhooks);
    outbox.activate(state.plan.outbox);
    admin = await startAdminServer(config.admin.address, adminSource);
  } catch (err) {
    listeners.stopAccepting();
    await release(Promise.all([webhooks.close(0), outbox.close(0)]));
    throw err;
  }

  if (options.watch ?? true) watch = watchFiles(watchedFiles(firstVersion, first), options.watchIntervalMs ?? 500, () => void reload('watch'));

  logger.info(
    {
      version: VERSION,
      listeners: Object.fromEntries(config.listeners.map((l) => [l.name, formatAddress(listeners.address(l.name))])),
      admin: formatAddress(admin.address),
      tracing: otel.traces === undefined ? false : { exporters: otel.traces.exporters, protocol: otel.traces.otlp.protocol, propagators: otel.traces.propagators },
      metrics: { prometheus: otel.metrics.prometheus, otlp: otel.metrics.otlp?.protocol ?? false },
      logLevel: otel.logLevel,
    },
    'gatehouse started',
  );

  let shuttingDown: Promise<void> | undefined;
  async function shutdown(): Promise<void> {
    ready = false;
    state.draining = true;
    watch?.stop();
    listeners.stopAccepting();
    const drainMs = state.plan.config.shutdown.drainTimeout;
    // delivery workers (webhooks, outbox) stop claiming now; deliveries in flight get the drain
    // timeout to finish, the rest are handed back to the store and resume at the next start
    const deliveriesStopped = Promise.all([webhooks.close(drainMs), outbox.close(drainMs)]);
    if (state.inFlight > 0) {
      logger.info({ inFlight: state.inFlight, drainTimeoutMs: drainMs }, 'draining requests in flight');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainMs);
        state.onIdle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    if (state.inFlight > 0) logger.warn({ inFlight: state.inFlight }, 'drain timeout passed; closing remaining connections');
    await release(deliveriesStopped);
    await new Promise<void>((resolve) => {
      admin.server.close(() => resolve());
      admin.server.closeAllConnections();
    });
    logger.info('gatehouse stopped');
    accessLog.flush();
    await flush(accessLogStream);
  }

  return {
    logger,
    adminAddress: admin.address,
    listenerAddress: (name) => listeners.address(name),
    currentPlan: () => state.plan,
    reload,
    shutdown: () => (shuttingDown ??= shutdown()),
  };
}

/**
 * Sections read once at start (like Traefik's install configuration): say so when they change.
 * `admin.token` is not one of them: the admin API reads it from the running plan.
 */
function warnInstallTimeChanges(first: LoadedConfig, next: LoadedConfig, logger: Logger): void {
  const installTime = ({ config }: LoadedConfig) => ({ 'admin.address': config.admin.address, telemetry: config.telemetry, dataDir: config.dataDir });
  const before = installTime(first);
  const after = installTime(next);
  for (const key of Object.keys(before) as (keyof typeof before)[]) {
    if (fingerprint(before[key]) !== fingerprint(after[key])) {
      logger.warn({ section: key }, `changes to '${key}' take effect at the next restart`);
    }
  }
}

function formatAddress(a: AddressInfo | undefined): string | undefined {
  if (a === undefined) return undefined;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

async function flush(stream: DestinationStream): Promise<void> {
  const s = stream as DestinationStream & { flushSync?: () => void };
  try {
    s.flushSync?.();
  } catch {
    // sonic-boom throws when not ready yet; nothing was buffered then
  }
  await Promise.resolve();
}
