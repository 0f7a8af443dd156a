import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { UpstreamClient } from '../core/upstream.js';
import type { Config } from '../config/schema.js';
import { DEFAULT_SQLITE_STORE, openSqlite, type SqliteDatabase, type StoreRegistry } from '../stores/stores.js';
import type { DeliveryStore } from './store.js';
import { createRedisDeliveryStore } from './store-redis.js';
import { sqliteDeliveryStore } from './store-sqlite.js';
import { createDeliveryWorker, type DeliveryWorker, type DeliveryWorkerOptions } from './worker.js';

/**
 * The one durable delivery engine (SPEC §7, §11): its stores (one per named store, shared by
 * every route that names it) and its workers. Built once by the composition root and handed to
 * the concerns that deliver (webhooks, the outbox), which say what to send and what an answer
 * means; the engine keeps, leases, retries, dead-letters and replays.
 */
export interface DeliveryEngine {
  /** This process's lease owner id: replicas (and restarts) never share one. */
  readonly owner: string;
  /** The delivery store behind a `stores:` name (opened on first use; a memory store is warned about). */
  store(name: string, route: string): DeliveryStore;
  /** The store a route uses when it names none: the first sqlite store, else `<dataDir>/gatehouse.db`. */
  defaultStore(config: Config): string;
  worker(options: Omit<DeliveryWorkerOptions, 'owner' | 'clock' | 'rand' | 'logger'>): DeliveryWorker;
  close(): void;
}

/** Where a route's messages go, from the plan that is live now (a reload may change it). */
export interface DeliveryTarget {
  /** The route's upstream, reached the way proxied traffic reaches it (breaker, credentials, TLS, span). */
  readonly upstream: UpstreamClient;
  /** The route's path rewrite. */
  readonly rewrite: (path: string) => string;
  /** `rewrite.host`: undefined = the endpoint's authority, 'preserve' = the client's Host. */
  readonly host: string | undefined;
  /** The route `timeout`: bounds each delivery attempt. */
  readonly timeoutMs: number;
}

export interface DeliveryEngineDeps {
  readonly stores: StoreRegistry;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly logger: Logger;
}

export function createDeliveryEngine(deps: DeliveryEngineDeps): DeliveryEngine {
  const { stores, logger } = deps;
  const owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const memoryDbs = new Map<string, SqliteDatabase>();

  return {
    owner,
    store(name, route) {
      const cfg = stores.config(name);
      switch (cfg?.type) {
        case 'redis':
          return createRedisDeliveryStore(stores.redis(name));
        case 'memory': {
          let db = memoryDbs.get(name);
          if (db === undefined) {
            db = openSqlite(':memory:');
            memoryDbs.set(name, db);
            logger.warn({ store: name, route }, `route '${route}' keeps its messages in memory store '${name}': they are lost when gatehouse stops (not durable)`);
          }
          return sqliteDeliveryStore(db, false);
        }
        case 'sqlite':
        case undefined:
          return sqliteDeliveryStore(stores.sqlite(name), true, stores.sqliteHealth(name));
      }
    },
    defaultStore: (config) => Object.entries(config.stores).find(([, s]) => s.type === 'sqlite')?.[0] ?? DEFAULT_SQLITE_STORE,
    worker: (options) => createDeliveryWorker({ ...options, owner, clock: deps.clock, rand: deps.rand, logger }),
    close() {
      for (const db of memoryDbs.values()) db.close();
      memoryDbs.clear();
    },
  };
}
