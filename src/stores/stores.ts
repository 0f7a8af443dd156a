import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { fingerprint } from '../config/fingerprint.js';
import type { Config, StoreConfig } from '../config/schema.js';

export type SqliteDatabase = Database.Database;

/**
 * The named `stores:` of the config, opened on first use and shared by every quota and webhook
 * that names them. Connections outlive reloads: a store whose config is unchanged keeps its
 * client, so a reload never drops Redis connections or reopens the database.
 */
export interface StoreRegistry {
  /** The store's config, or undefined when no store has that name. */
  config(name: string): StoreConfig | undefined;
  /** A shared ioredis client for a `redis` store; fails fast while disconnected (no offline queue). */
  redis(name: string): Redis;
  /** The better-sqlite3 handle of a `sqlite` store (WAL, synchronous=FULL: durable on commit). */
  sqlite(name: string): SqliteDatabase;
  /** Whether each opened store currently answers: `gatehouse_store_up{store}`. */
  health(): ReadonlyMap<string, boolean>;
  /** Adopts a new config's stores after a reload; closes the ones that changed or vanished. */
  update(config: Config): void;
  close(): Promise<void>;
}

/** The name used for the implicit sqlite store when a webhook names none and none is defined. */
export const DEFAULT_SQLITE_STORE = 'default-sqlite';

interface Opened {
  readonly print: string;
  readonly redis?: Redis;
  readonly sqlite?: SqliteDatabase;
}

export function createStoreRegistry(initial: Config, logger: Logger, cwd = process.cwd()): StoreRegistry {
  let config = initial;
  const opened = new Map<string, Opened>();

  const configOf = (name: string): StoreConfig | undefined =>
    Object.hasOwn(config.stores, name) ? config.stores[name] : name === DEFAULT_SQLITE_STORE ? { type: 'sqlite' } : undefined;

  function open(name: string): Opened {
    const cfg = configOf(name);
    if (cfg === undefined) throw new Error(`no store named '${name}'`);
    const print = fingerprint(cfg) + fingerprint(config.dataDir);
    const existing = opened.get(name);
    if (existing?.print === print) return existing;
    if (existing) closeOne(name, existing);

    let entry: Opened;
    switch (cfg.type) {
      case 'memory':
        entry = { print };
        break;
      case 'redis': {
        const client = new Redis(cfg.url, {
          keyPrefix: cfg.keyPrefix,
          connectTimeout: cfg.connectTimeout,
          commandTimeout: cfg.commandTimeout,
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          // reconnect forever, at most every 2 s: the store comes back when Redis does
          retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
        });
        let up = false;
        client.on('ready', () => {
          if (!up) logger.info({ store: name }, 'redis store connected');
          up = true;
        });
        client.on('error', (err: Error) => {
          if (up) logger.warn({ store: name, err: err.message }, 'redis store unavailable');
          up = false;
        });
        client.on('end', () => (up = false));
        entry = { print, redis: client };
        break;
      }
      case 'sqlite': {
        const file = resolve(cwd, cfg.path ?? resolve(config.dataDir, 'gatehouse.db'));
        mkdirSync(dirname(file), { recursive: true });
        const db = new Database(file);
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        db.pragma('busy_timeout = 5000');
        entry = { print, sqlite: db };
        break;
      }
    }
    opened.set(name, entry);
    return entry;
  }

  function closeOne(name: string, entry: Opened): void {
    opened.delete(name);
    entry.redis?.disconnect();
    entry.sqlite?.close();
  }

  return {
    config: configOf,
    redis(name) {
      const client = open(name).redis;
      if (client === undefined) throw new Error(`store '${name}' is not a redis store`);
      return client;
    },
    sqlite(name) {
      const db = open(name).sqlite;
      if (db === undefined) throw new Error(`store '${name}' is not a sqlite store`);
      return db;
    },
    health() {
      const out = new Map<string, boolean>();
      for (const [name, entry] of opened) out.set(name, entry.redis === undefined ? true : entry.redis.status === 'ready');
      return out;
    },
    update(next) {
      config = next;
      for (const [name, entry] of opened) {
        const cfg = configOf(name);
        if (cfg === undefined || fingerprint(cfg) + fingerprint(config.dataDir) !== entry.print) closeOne(name, entry);
      }
    },
    async close() {
      for (const [name, entry] of [...opened]) {
        if (entry.redis !== undefined) await entry.redis.quit().catch(() => entry.redis?.disconnect());
        closeOne(name, entry);
      }
    },
  };
}
