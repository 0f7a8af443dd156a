import { unwatchFile, watchFile } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { pino, type DestinationStream, type Logger } from 'pino';
import { json, startAdminServer, type ReloadResult } from './admin/server.js';
import { ConfigError, formatProblem } from './config/errors.js';
import { fingerprint } from './config/fingerprint.js';
import { loadConfigFile, type LoadedConfig } from './config/load.js';
import { compilePlan, retiredUpstreams, type Plan, type PlanDeps } from './proxy/plan.js';
import { retireQuotaStores } from './quota/quota.js';
import type { PipelineDeps, ProxyState } from './proxy/pipeline.js';
import { createListeners } from './proxy/server.js';
import { systemClock } from './resilience/clock.js';
import { createStoreRegistry } from './stores/stores.js';
import { METRICS } from './telemetry/names.js';
import { createWebSocketProxy } from './proxy/websocket.js';
import { createAccessLog, noAccessLog } from './telemetry/access-log.js';
import { createMetrics } from './telemetry/metrics.js';
import { createTracing } from './telemetry/tracing.js';
import { VERSION } from './version.js';

export interface StartOptions {
  readonly configFile: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Access-log lines (default: stdout). */
  readonly accessLogStream?: DestinationStream;
  /** gatehouse's own log (default: stderr). */
  readonly logStream?: DestinationStream;
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
  const first = loadConfigFile(file, { env });
  const { config } = first;

  const logger = pino({ base: { service: 'gatehouse' }, timestamp: pino.stdTimeFunctions.isoTime }, options.logStream ?? pino.destination(2));
  const resource = resourceFromAttributes({
    'service.name': config.telemetry.serviceName ?? env.OTEL_SERVICE_NAME ?? 'gatehouse',
    'service.version': VERSION,
  });
  const tracing = createTracing(config.telemetry, env, resource);
  const metrics = createMetrics(config.telemetry, resource);
  const accessLogStream = options.accessLogStream ?? pino.destination({ dest: 1, sync: false, minLength: 4096 });
  const accessLog = config.telemetry.accessLog === 'off' ? noAccessLog : createAccessLog(accessLogStream);
  const webSockets = createWebSocketProxy();

  const stores = createStoreRegistry(config, logger);
  metrics.meter
    .createObservableGauge(METRICS.storeUp, { description: 'Whether each state store answers (1) or not (0).' })
    .addCallback((result) => {
      for (const [store, up] of stores.health()) result.observe(up ? 1 : 0, { store });
    });

  const state: ProxyState = { plan: undefined as unknown as Plan, draining: false, inFlight: 0, onIdle: undefined };
  const planDeps: PlanDeps = { tracing, metrics, logger, clock: systemClock, rand: Math.random, stores, isDraining: () => state.draining };
  const pipelineDeps: PipelineDeps = { tracing, metrics, accessLog, webSockets };
  state.plan = compilePlan(first, planDeps, 1);

  const listeners = createListeners(state, pipelineDeps);
  (await listeners.prepare(state.plan)).commit();

  let ready = true;
  let reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, version: 1, changed: false });

  async function doReload(trigger: string): Promise<ReloadResult> {
    const previous = state.plan;
    let loaded: LoadedConfig;
    try {
      loaded = loadConfigFile(file, { env });
    } catch (err) {
      const errors = err instanceof ConfigError ? err.problems.map(formatProblem) : [String(err)];
      metrics.configReloads.add(1, { result: 'failure' });
      logger.error({ trigger, errors }, 'config reload rejected; the running config keeps serving');
      return { ok: false, errors };
    }
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

  const admin = await startAdminServer(config.admin.address, {
    isReady: () => ready && !state.draining,
    token: () => state.plan.config.admin.token,
    configView: () => ({ version: state.plan.version, config: state.plan.loaded.redacted }),
    upstreamsView: () => ({ upstreams: Object.fromEntries([...state.plan.upstreams].map(([name, u]) => [name, u.view()])) }),
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
    handle(req, res, path) {
      if (path !== '/admin/quotas' || req.method !== 'GET') return false;
      json(res, 200, state.plan.quotas.view());
      return true;
    },
    reload: () => reload('admin'),
  });

  let debounce: NodeJS.Timeout | undefined;
  if (options.watch ?? true) {
    // stat polling sees in-place writes and rename/symlink swaps (Kubernetes ConfigMaps) alike
    watchFile(file, { interval: options.watchIntervalMs ?? 500, persistent: false }, (curr, prev) => {
      if (curr.mtimeMs === prev.mtimeMs && curr.ino === prev.ino && curr.size === prev.size) return;
      clearTimeout(debounce);
      debounce = setTimeout(() => void reload('watch'), 150);
    });
  }

  logger.info(
    {
      version: VERSION,
      listeners: Object.fromEntries(config.listeners.map((l) => [l.name, formatAddress(listeners.address(l.name))])),
      admin: formatAddress(admin.address),
      tracing: tracing !== undefined,
    },
    'gatehouse started',
  );

  let shuttingDown: Promise<void> | undefined;
  async function shutdown(): Promise<void> {
    ready = false;
    state.draining = true;
    unwatchFile(file);
    clearTimeout(debounce);
    listeners.stopAccepting();
    const drainMs = state.plan.config.shutdown.drainTimeout;
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
    listeners.closeAll();
    webSockets.close();
    await Promise.allSettled([...state.plan.upstreams.values()].map((u) => u.close()));
    state.plan.quotas.close();
    await stores.close();
    await Promise.allSettled([tracing?.shutdown(), metrics.shutdown()]);
    await new Promise<void>((resolve) => {
      admin.server.close(() => resolve());
      admin.server.closeAllConnections();
    });
    logger.info('gatehouse stopped');
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

/** Sections read once at start (like Traefik's install configuration): say so when they change. */
function warnInstallTimeChanges(first: LoadedConfig, next: LoadedConfig, logger: Logger): void {
  for (const key of ['admin', 'telemetry', 'dataDir'] as const) {
    if (fingerprint(first.config[key]) !== fingerprint(next.config[key])) {
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
