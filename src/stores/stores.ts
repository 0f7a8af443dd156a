import { mkdirSync, statSync } from 'node:fs';
import { stat, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { fingerprint } from '../config/fingerprint.js';
import type { Config, StoreConfig } from '../config/schema.js';

export type SqliteDatabase = Database.Database;

/**
 * The Redis client and the SQLite binding are loaded by the first store of their kind: a gatehouse
 * with memory stores only (most sidecars) does not hold them (about 8 MB of resident memory). Both
 * are CommonJS, so a synchronous require.
 */
const load = createRequire(import.meta.url);
export const openSqlite = (file: string): SqliteDatabase => new (load('better-sqlite3') as typeof Database)(file);
const newRedis = (url: string, options: RedisOptions): Redis => new (load('ioredis') as typeof import('ioredis')).Redis(url, options);

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
  /** Whether a `sqlite` store can write durably; its writers report their outcomes here. */
  sqliteHealth(name: string): SqliteHealth;
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
  readonly monitor?: SqliteMonitor;
}

/** What the writers of a sqlite store tell it, and ask it. */
export interface SqliteHealth {
  /**
   * Why a write would not be durable now: the database file was removed or replaced (writes
   * would go to a file no restart will find). undefined while it is the file that was opened.
   */
  notDurable(): string | undefined;
  /**
   * A write transaction ended: its error (the disk is full, an I/O error) marks the store down;
   * a durable write that committed marks it up again.
   */
  wrote(err: unknown, durable: boolean): void;
}

interface SqliteMonitor extends SqliteHealth {
  up(): boolean;
  close(): void;
}

/** How often an open sqlite store looks at its file, its disk and, while down, tries a write. */
const SQLITE_CHECK_MS = 1_000;
/** Less free space than this on the store's file system: it counts as full. */
const SQLITE_MIN_FREE_BYTES = 64 * 1024;

/** SQLite result codes that mean the database cannot take writes (not a bad statement). */
const isStorageError = (err: unknown): boolean => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^SQLITE_(FULL|IOERR|CANTOPEN|READONLY|CORRUPT|NOTADB)/.test(code);
};

/**
 * `gatehouse_store_up` for a sqlite store: down while a write failed for lack of space or an I/O
 * error (until a write commits again: a durable one, or a small probe write tried every second),
 * while its file system has less than 64 KB free, and while the database file is no longer the
 * one opened (its directory removed: SQLite would go on writing into a deleted file).
 */
function monitorSqlite(name: string, db: SqliteDatabase, file: string, logger: Logger): SqliteMonitor {
  const opened = statSync(file);
  let fileProblem: string | undefined;
  let diskProblem: string | undefined;
  let writeProblem: string | undefined;
  let wasUp = true;
  let checking = false;

  const report = () => {
    const problem = fileProblem ?? writeProblem ?? diskProblem;
    if (wasUp && problem !== undefined) logger.error({ store: name, file, reason: problem }, 'sqlite store cannot write; webhooks are refused until it can');
    if (!wasUp && problem === undefined) logger.info({ store: name }, 'sqlite store writes again');
    wasUp = problem === undefined;
  };

  async function check(): Promise<void> {
    try {
      const now = await stat(file);
      fileProblem = now.ino === opened.ino && now.dev === opened.dev ? undefined : 'the database file was replaced';
    } catch (err) {
      fileProblem = `the database file is gone (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`;
    }
    try {
      const fs = await statfs(dirname(file));
      diskProblem = fs.bavail * fs.bsize < SQLITE_MIN_FREE_BYTES ? `the disk is full (${fs.bavail * fs.bsize} bytes free)` : undefined;
    } catch {
      diskProblem = undefined; // the file check says what matters
    }
    if (writeProblem !== undefined && fileProblem === undefined && db.open) {
      try {
        db.exec('CREATE TABLE IF NOT EXISTS gatehouse_health (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)');
        db.prepare('INSERT OR REPLACE INTO gatehouse_health (id, at) VALUES (1, ?)').run(opened.ino);
        writeProblem = undefined;
      } catch (err) {
        writeProblem = describeStorageError(err);
      }
    }
    report();
  }

  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void check().finally(() => (checking = false));
  }, SQLITE_CHECK_MS);
  timer.unref();

  return {
    notDurable: () => fileProblem,
    wrote(err, durable) {
      if (err !== undefined && err !== null) {
        if (!isStorageError(err)) return;
        writeProblem = describeStorageError(err);
      } else if (durable) {
        writeProblem = undefined;
      }
      report();
    },
    up: () => fileProblem === undefined && writeProblem === undefined && diskProblem === undefined,
    close: () => clearInterval(timer),
  };
}

const describeStorageError = (err: unknown): string => (err instanceof Error ? err.message : 'write failed');

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
        const client = newRedis(cfg.url, {
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
        const db = openSqlite(file);
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        db.pragma('busy_timeout = 5000');
        entry = { print, sqlite: db, monitor: monitorSqlite(name, db, file, logger) };
        break;
      }
    }
    opened.set(name, entry);
    return entry;
  }

  function closeOne(name: string, entry: Opened): void {
    opened.delete(name);
    entry.redis?.disconnect();
    entry.monitor?.close();
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
    sqliteHealth(name) {
      const monitor = open(name).monitor;
      if (monitor === undefined) throw new Error(`store '${name}' is not a sqlite store`);
      return monitor;
    },
    health() {
      const out = new Map<string, boolean>();
      for (const [name, entry] of opened) out.set(name, entry.redis !== undefined ? entry.redis.status === 'ready' : (entry.monitor?.up() ?? true));
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
