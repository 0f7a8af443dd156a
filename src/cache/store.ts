import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { SqliteDatabase } from '../stores/stores.js';
import { entryBytes, type CachedAnswer } from './entry.js';

/*
 * Where a route's cache keeps its answers. Each key (a URL of a route) holds the variants of that
 * URL (one per set of `Vary` values). undici's stores were considered and not used: its
 * MemoryCacheStore evicts half of every URL's entries at once rather than the least recently used
 * ones and takes a Writable stream per answer, and its SqliteCacheStore needs node:sqlite (Node 22),
 * while gatehouse runs on Node 20 with better-sqlite3 already open for the named stores.
 */
export interface CacheStore {
  /** The variants stored under `key`; memory and sqlite answer at once, Redis with a promise. */
  get(key: string): readonly CachedAnswer[] | undefined | Promise<readonly CachedAnswer[] | undefined>;
  /** Stores `answer` under `key`, replacing the variant with the same Vary values; kept `keepMs` at most. */
  put(key: string, answer: CachedAnswer, keepMs: number): void;
  delete(key: string): void;
  /** The largest answer worth storing, in bytes. */
  readonly maxEntryBytes: number;
}

/** A URL keeps at most this many variants (Vary values); the oldest leaves first. */
const MAX_VARIANTS = 8;
/** sqlite and Redis stores: the largest answer stored. */
const MAX_SHARED_ENTRY_BYTES = 8 * 1024 * 1024;

/** The variant of `variants` whose Vary values equal `values`, or -1. */
function variantIndex(variants: readonly CachedAnswer[], answer: CachedAnswer): number {
  for (let i = 0; i < variants.length; i++) {
    const v = variants[i]!;
    if (v.vary.length === answer.vary.length && v.vary.every((f, j) => f === answer.vary[j]) && v.varyValues.every((x, j) => x === answer.varyValues[j])) return i;
  }
  return -1;
}

function withVariant(variants: readonly CachedAnswer[] | undefined, answer: CachedAnswer): CachedAnswer[] {
  const list = variants === undefined ? [] : [...variants];
  const i = variantIndex(list, answer);
  if (i >= 0) list.splice(i, 1);
  list.push(answer);
  if (list.length > MAX_VARIANTS) list.shift();
  return list;
}

// ---------------------------------------------------------------- memory

interface MemorySlot {
  variants: readonly CachedAnswer[];
  bytes: number;
  /** Clock.monotonic() after which the slot is dropped. */
  until: number;
}

export interface MemoryCacheStore extends CacheStore {
  get(key: string): readonly CachedAnswer[] | undefined;
  /** Bytes held now (bodies, headers and a fixed overhead per answer). */
  readonly bytes: number;
  readonly size: number;
}

/**
 * A memory store bounded by `maxBytes`: a Map in least-recently-used order (a hit moves its key
 * to the end), the front evicted until the total fits. An answer over a quarter of the bound is
 * not stored, so one large body cannot empty the cache.
 */
export function createMemoryStore(maxBytes: number, clock: Clock): MemoryCacheStore {
  const slots = new Map<string, MemorySlot>();
  let bytes = 0;

  const drop = (key: string, slot: MemorySlot) => {
    slots.delete(key);
    bytes -= slot.bytes;
  };

  return {
    maxEntryBytes: Math.floor(maxBytes / 4),
    get bytes() {
      return bytes;
    },
    get size() {
      return slots.size;
    },
    get(key) {
      const slot = slots.get(key);
      if (slot === undefined) return undefined;
      if (clock.monotonic() > slot.until) {
        drop(key, slot);
        return undefined;
      }
      slots.delete(key); // most recently used: to the end
      slots.set(key, slot);
      return slot.variants;
    },
    put(key, answer, keepMs) {
      const old = slots.get(key);
      const variants = withVariant(old?.variants, answer);
      let size = key.length;
      for (const v of variants) size += entryBytes(v);
      if (old !== undefined) drop(key, old);
      if (size > maxBytes) return;
      const until = Math.max(old?.until ?? 0, clock.monotonic() + keepMs);
      slots.set(key, { variants, bytes: size, until });
      bytes += size;
      for (const [k, slot] of slots) {
        if (bytes <= maxBytes) break;
        drop(k, slot);
      }
    },
    delete(key) {
      const slot = slots.get(key);
      if (slot !== undefined) drop(key, slot);
    },
  };
}

// ---------------------------------------------------------------- serialized form

/** Variants as one Buffer: a 4-byte length, the metadata as JSON, then the bodies in order. */
export function encodeVariants(variants: readonly CachedAnswer[]): Buffer {
  const meta = JSON.stringify(variants.map((v) => ({ ...v, body: v.body.length })));
  const head = Buffer.from(meta, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(head.length);
  return Buffer.concat([len, head, ...variants.map((v) => v.body)]);
}

export function decodeVariants(buf: Buffer): CachedAnswer[] | undefined {
  try {
    const n = buf.readUInt32BE(0);
    const meta = JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as (Omit<CachedAnswer, 'body'> & { body: number })[];
    let at = 4 + n;
    return meta.map((m) => {
      const body = Buffer.from(buf.subarray(at, at + m.body));
      at += m.body;
      return { ...m, body };
    });
  } catch {
    return undefined; // not ours, or cut: a miss
  }
}

// ---------------------------------------------------------------- sqlite

/**
 * Answers in a table of the named sqlite store. Writes are gathered and committed together once
 * per turn of the event loop: the store's connection syncs every commit (it also holds webhook
 * events), and a cache fill should not pay an fsync per answer.
 */
export function createSqliteStore(db: SqliteDatabase, namespace: string, clock: Clock, logger: Logger): CacheStore {
  db.exec('CREATE TABLE IF NOT EXISTS cache_entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires INTEGER NOT NULL)');
  db.exec('CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries (expires)');
  const select = db.prepare<[string, number], { value: Buffer }>('SELECT value FROM cache_entries WHERE key = ? AND expires > ?');
  const upsert = db.prepare('INSERT OR REPLACE INTO cache_entries (key, value, expires) VALUES (?, ?, ?)');
  const remove = db.prepare('DELETE FROM cache_entries WHERE key = ?');
  const expire = db.prepare('DELETE FROM cache_entries WHERE expires <= ?');
  const pending = new Map<string, { value: Buffer; expires: number } | null>();
  let scheduled = false;
  let writes = 0;

  const flush = db.transaction(() => {
    for (const [key, row] of pending) {
      if (row === null) remove.run(key);
      else upsert.run(key, row.value, row.expires);
    }
    // now and then, drop what expired
    if ((writes += pending.size) >= 256) {
      writes = 0;
      expire.run(clock.now());
    }
  });
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      try {
        flush();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'the sqlite cache store could not write');
      }
      pending.clear();
    });
  };
  const full = (key: string) => `${namespace}\n${key}`;
  const read = (key: string): readonly CachedAnswer[] | undefined => {
    const queued = pending.get(full(key));
    if (queued !== undefined) return queued === null ? undefined : decodeVariants(queued.value);
    try {
      const row = select.get(full(key), clock.now());
      return row === undefined ? undefined : decodeVariants(row.value);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'the sqlite cache store could not read');
      return undefined;
    }
  };

  return {
    maxEntryBytes: MAX_SHARED_ENTRY_BYTES,
    get: read,
    put(key, answer, keepMs) {
      pending.set(full(key), { value: encodeVariants(withVariant(read(key), answer)), expires: clock.now() + keepMs });
      schedule();
    },
    delete(key) {
      pending.set(full(key), null);
      schedule();
    },
  };
}

// ---------------------------------------------------------------- redis

/**
 * Answers in the named Redis store (shared by replicas), one key per URL with a TTL. Redis being
 * away makes a miss, never an error: the client fails fast (no offline queue).
 */
export function createRedisStore(redis: Redis, namespace: string, logger: Logger): CacheStore {
  const full = (key: string) => `cache:${namespace}:${key}`;
  let warned = false;
  const warn = (err: unknown) => {
    if (warned) return;
    warned = true;
    logger.warn({ err: (err as Error).message }, 'the redis cache store is unavailable: answers are not cached');
  };
  const read = async (key: string): Promise<CachedAnswer[] | undefined> => {
    try {
      const value = await redis.getBuffer(full(key));
      warned = false;
      return value === null ? undefined : decodeVariants(value);
    } catch (err) {
      warn(err);
      return undefined;
    }
  };
  return {
    maxEntryBytes: MAX_SHARED_ENTRY_BYTES,
    get: read,
    put(key, answer, keepMs) {
      void read(key).then((variants) => redis.set(full(key), encodeVariants(withVariant(variants, answer)), 'PX', Math.max(1, Math.ceil(keepMs))).catch(warn));
    },
    delete(key) {
      redis.del(full(key)).catch(warn);
    },
  };
}
