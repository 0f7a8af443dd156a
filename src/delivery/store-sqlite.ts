import type { SqliteDatabase, SqliteHealth } from '../stores/stores.js';
import { FINISHED_KEPT_MS, RECENT_KEPT, type DeliveryRef, type DeliveryState, type DeliveryStore, type ListQuery, type NewDelivery, type StoredDelivery } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS delivery_messages (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  id              TEXT NOT NULL UNIQUE,
  route           TEXT NOT NULL,
  kind            TEXT NOT NULL,
  created_at      INTEGER NOT NULL,
  method          TEXT NOT NULL,
  path            TEXT NOT NULL,
  headers         TEXT NOT NULL,
  body            BLOB,
  request_id      TEXT NOT NULL,
  trace           TEXT,
  provider        TEXT,
  event_id        TEXT,
  idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS delivery_messages_route ON delivery_messages (route, seq);
CREATE TABLE IF NOT EXISTS deliveries (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id   TEXT NOT NULL REFERENCES delivery_messages (id) ON DELETE CASCADE,
  route        TEXT NOT NULL,
  destination  TEXT NOT NULL,
  state        TEXT NOT NULL,
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_at      INTEGER NOT NULL,
  owner        TEXT,
  lease_until  INTEGER,
  order_key    TEXT,
  expires_at   INTEGER,
  payload      BLOB,
  last_error   TEXT,
  last_status  INTEGER,
  dead_at      INTEGER,
  delivered_at INTEGER,
  UNIQUE (message_id, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (route, destination, state, next_at);
CREATE INDEX IF NOT EXISTS deliveries_order ON deliveries (route, destination, order_key, seq) WHERE order_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (dead_at) WHERE dead_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS delivery_dedupe (
  route      TEXT NOT NULL,
  key        TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (route, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivery_dedupe_expiry ON delivery_dedupe (expires_at);
`;

/**
 * Webhook events stored by gatehouse before the shared engine (tables webhook_events and
 * webhook_dedupe) move into its tables when the database is opened, so an upgrade loses none.
 */
const MIGRATE_WEBHOOK_EVENTS = `
INSERT OR IGNORE INTO delivery_messages (id, route, kind, created_at, method, path, headers, body, request_id, trace, provider, event_id)
  SELECT id, route, 'webhook', received_at, method, path, headers, body, request_id, trace, provider, event_id FROM webhook_events ORDER BY seq;
INSERT OR IGNORE INTO deliveries (message_id, route, destination, state, attempts, next_at, owner, lease_until, order_key, last_error, dead_at, delivered_at)
  SELECT id, route, 'upstream', state, attempts, next_at, owner, lease_until, order_key, last_error, dead_at, delivered_at FROM webhook_events ORDER BY seq;
INSERT OR IGNORE INTO delivery_dedupe (route, key, expires_at) SELECT route, event_id, expires_at FROM webhook_dedupe;
DROP TABLE webhook_events;
DROP TABLE webhook_dedupe;
`;

interface Row {
  seq: number;
  id: string;
  route: string;
  kind: 'webhook' | 'outbox';
  created_at: number;
  method: string;
  path: string;
  headers: string;
  body: Buffer | null;
  request_id: string;
  trace: string | null;
  provider: string | null;
  event_id: string | null;
  idempotency_key: string | null;
  destination: string;
  state: DeliveryState;
  attempts: number;
  next_at: number;
  owner: string | null;
  order_key: string | null;
  expires_at: number | null;
  payload: Buffer | null;
  last_error: string | null;
  last_status: number | null;
  dead_at: number | null;
  delivered_at: number | null;
}

const stores = new WeakMap<SqliteDatabase, DeliveryStore>();

/**
 * The embedded store: one better-sqlite3 database (WAL, synchronous=FULL, so a commit is on disk
 * when it returns). Writes made in the same turn of the event loop share one transaction (group
 * commit): under load many acceptances cost one fsync. `durable: false` serves `memory` stores
 * with an in-memory database.
 */
export function sqliteDeliveryStore(db: SqliteDatabase, durable: boolean, health?: SqliteHealth): DeliveryStore {
  let store = stores.get(db);
  if (store === undefined) {
    store = createSqliteDeliveryStore(db, durable, health);
    stores.set(db, store);
  }
  return store;
}

const SELECT = `SELECT m.*, d.destination, d.state, d.attempts, d.next_at, d.owner, d.order_key, d.expires_at, d.payload, d.last_error,
  d.last_status, d.dead_at, d.delivered_at, d.seq AS dseq FROM deliveries d JOIN delivery_messages m ON m.id = d.message_id`;

function createSqliteDeliveryStore(db: SqliteDatabase, durable: boolean, health: SqliteHealth | undefined): DeliveryStore {
  db.pragma('foreign_keys = ON');
  db.exec(SCHEMA);
  const legacy = db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN ('webhook_events', 'webhook_dedupe')`).get() as { n: number };
  if (legacy.n === 2) db.transaction(() => db.exec(MIGRATE_WEBHOOK_EVENTS)).immediate();

  const q = {
    claimKey: db.prepare(
      `INSERT INTO delivery_dedupe (route, key, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (route, key) DO UPDATE SET expires_at = excluded.expires_at WHERE delivery_dedupe.expires_at <= ?`,
    ),
    keyBusy: db.prepare(
      `SELECT 1 FROM deliveries WHERE route = ? AND destination = ? AND order_key = ? AND state IN ('pending', 'waiting', 'delivering') LIMIT 1`,
    ),
    insertMessage: db.prepare(
      `INSERT INTO delivery_messages (id, route, kind, created_at, method, path, headers, body, request_id, trace, provider, event_id, idempotency_key)
       VALUES (@id, @route, @kind, @createdAt, @method, @path, @headers, @body, @requestId, @trace, @provider, @eventId, @idempotencyKey)`,
    ),
    insertDelivery: db.prepare(
      `INSERT INTO deliveries (message_id, route, destination, state, attempts, next_at, order_key, expires_at, payload, last_error, last_status)
       VALUES (@id, @route, @destination, @state, @attempts, @nextAt, @orderKey, @expiresAt, @payload, @lastError, @lastStatus)`,
    ),
    recover: db.prepare(
      `UPDATE deliveries SET state = 'pending', owner = NULL, lease_until = NULL, next_at = ?
       WHERE route = ? AND destination = ? AND state = 'delivering' AND lease_until <= ?`,
    ),
    claim: db.prepare(
      `UPDATE deliveries SET state = 'delivering', owner = @owner, lease_until = @leaseUntil, attempts = attempts + 1
       WHERE seq IN (SELECT seq FROM deliveries WHERE route = @route AND destination = @destination AND state = 'pending' AND next_at <= @now
                     ORDER BY next_at, seq LIMIT @limit)
       RETURNING seq`,
    ),
    bySeq: db.prepare(`${SELECT} WHERE d.seq = ?`),
    get: db.prepare(`${SELECT} WHERE d.message_id = ? AND d.destination = ?`),
    ofMessage: db.prepare(`${SELECT} WHERE d.message_id = ? ORDER BY d.seq`),
    lease: db.prepare(`SELECT state, owner, route, destination, order_key FROM deliveries WHERE message_id = ? AND destination = ?`),
    delivered: db.prepare(
      `UPDATE deliveries SET state = 'delivered', delivered_at = @now, dead_at = NULL, owner = NULL, lease_until = NULL, last_error = NULL,
       last_status = @status WHERE message_id = @id AND destination = @destination`,
    ),
    dropBody: db.prepare(
      `UPDATE delivery_messages SET body = NULL WHERE id = ? AND NOT EXISTS (
         SELECT 1 FROM deliveries WHERE message_id = ? AND payload IS NULL AND state NOT IN ('delivered', 'cancelled'))`,
    ),
    promote: db.prepare(
      `UPDATE deliveries SET state = 'pending', next_at = ?
       WHERE seq = (SELECT seq FROM deliveries WHERE route = ? AND destination = ? AND order_key = ? AND state = 'waiting' ORDER BY seq LIMIT 1)
       AND NOT EXISTS (SELECT 1 FROM deliveries WHERE route = ? AND destination = ? AND order_key = ? AND state IN ('pending', 'delivering'))`,
    ),
    retry: db.prepare(
      `UPDATE deliveries SET state = 'pending', next_at = ?, last_error = ?, last_status = coalesce(?, last_status), owner = NULL, lease_until = NULL
       WHERE message_id = ? AND destination = ? AND owner = ? AND state = 'delivering'`,
    ),
    dead: db.prepare(
      `UPDATE deliveries SET state = 'dead', dead_at = ?, last_error = ?, last_status = coalesce(?, last_status), owner = NULL, lease_until = NULL,
       order_key = NULL WHERE message_id = ? AND destination = ?`,
    ),
    dropDelivery: db.prepare(`DELETE FROM deliveries WHERE message_id = ? AND destination = ?`),
    dropOrphan: db.prepare(`DELETE FROM delivery_messages WHERE id = ? AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = ?)`),
    release: db.prepare(
      `UPDATE deliveries SET state = 'pending', next_at = ?, attempts = max(attempts - 1, 0), owner = NULL, lease_until = NULL
       WHERE message_id = ? AND destination = ? AND owner = ? AND state = 'delivering'`,
    ),
    cancel: db.prepare(
      `UPDATE deliveries SET state = 'cancelled', owner = NULL, lease_until = NULL, order_key = NULL
       WHERE message_id = ? AND destination = ? AND state IN ('pending', 'waiting', 'delivering')`,
    ),
    nextDue: db.prepare(
      `SELECT min(t) AS t FROM (
         SELECT min(next_at) AS t FROM deliveries WHERE route = @route AND destination = @destination AND state = 'pending'
         UNION ALL SELECT min(lease_until) FROM deliveries WHERE route = @route AND destination = @destination AND state = 'delivering')`,
    ),
    pending: db.prepare(`SELECT count(*) AS n FROM deliveries WHERE route = ? AND destination = ? AND state IN ('pending', 'waiting', 'delivering')`),
    deadCount: db.prepare(`SELECT count(*) AS n FROM deliveries WHERE route = ? AND destination = ? AND state = 'dead'`),
    listDead: db.prepare(`${SELECT} WHERE d.dead_at IS NOT NULL AND m.kind = ? ORDER BY d.dead_at, d.seq LIMIT 1000`),
    replay: db.prepare(
      `UPDATE deliveries SET state = 'pending', attempts = 0, next_at = @now, order_key = NULL,
       expires_at = CASE WHEN expires_at IS NULL THEN NULL ELSE @now + (expires_at - (SELECT created_at FROM delivery_messages WHERE id = @id)) END
       WHERE message_id = @id AND destination = @destination AND (state = 'dead' OR (state = 'delivered' AND @delivered = 1))`,
    ),
    forget: db.prepare(`DELETE FROM delivery_dedupe WHERE expires_at <= ?`),
    routes: db.prepare(`SELECT DISTINCT route FROM delivery_messages`),
    trim: db.prepare(
      `DELETE FROM delivery_messages WHERE id IN (
         SELECT m.id FROM delivery_messages m WHERE m.route = @route AND m.created_at < @before
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state NOT IN ('delivered', 'cancelled'))
         ORDER BY m.seq DESC LIMIT -1 OFFSET @kept)`,
    ),
  };

  // ---- group commit: every write queued in one turn runs in one transaction, each in a savepoint.
  // Only an acceptance (or a replay) must reach the disk before it returns (a 200 or 202 is
  // answered next): bookkeeping (claims, outcomes) commits with synchronous=NORMAL, which in WAL
  // mode survives a crash of the process (the OS has the pages) and is fsynced by the next
  // durable commit.
  interface Job {
    readonly run: () => unknown;
    readonly resolve: (v: unknown) => void;
    readonly reject: (e: unknown) => void;
  }
  let queue: Job[] = [];
  let durableQueued = false;
  const flush = () => {
    const jobs = queue;
    const fsync = durableQueued;
    queue = [];
    durableQueued = false;
    const outcomes: { ok: boolean; value: unknown }[] = [];
    // the store's health hears of failures to write (disk full, I/O), not of a job's own errors
    let failed: unknown;
    try {
      if (!fsync) db.pragma('synchronous = NORMAL');
      db.transaction(() => {
        for (const job of jobs) {
          try {
            outcomes.push({ ok: true, value: db.transaction(job.run)() });
          } catch (err) {
            failed ??= err;
            outcomes.push({ ok: false, value: err });
          }
        }
      }).immediate();
    } catch (err) {
      health?.wrote(err, fsync);
      for (const job of jobs) job.reject(err);
      return;
    } finally {
      if (db.open && !fsync) db.pragma('synchronous = FULL');
    }
    health?.wrote(failed, fsync);
    jobs.forEach((job, i) => (outcomes[i]!.ok ? job.resolve(outcomes[i]!.value) : job.reject(outcomes[i]!.value)));
  };
  const write = <T>(run: () => T, durable = false): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (queue.length === 0) setImmediate(flush);
      queue.push({ run, resolve: resolve as (v: unknown) => void, reject });
      if (durable) durableQueued = true;
    });
  const read = <T>(run: () => T): Promise<T> => new Promise<T>((resolve) => resolve(run()));

  const insertDeliveries = (msg: { id: string; route: string }, deliveries: readonly NewDelivery[], nowMs: number) => {
    for (const d of deliveries) {
      const orderKey = d.orderKey ?? null;
      const state = orderKey !== null && q.keyBusy.get(msg.route, d.destination, orderKey) !== undefined ? 'waiting' : 'pending';
      q.insertDelivery.run({
        id: msg.id,
        route: msg.route,
        destination: d.destination,
        state,
        attempts: d.attempts ?? 0,
        nextAt: nowMs,
        orderKey,
        expiresAt: d.expiresAt ?? null,
        payload: d.payload ?? null,
        lastError: d.lastError ?? null,
        lastStatus: d.lastStatus ?? null,
      });
    }
  };

  /** The next delivery waiting behind a finished one with the same ordering key becomes due. */
  const promoteNext = (row: { route: string; destination: string; order_key: string | null }, nowMs: number) => {
    if (row.order_key !== null) q.promote.run(nowMs, row.route, row.destination, row.order_key, row.route, row.destination, row.order_key);
  };
  type Lease = { state: DeliveryState; owner: string | null; route: string; destination: string; order_key: string | null };
  const leased = (ref: DeliveryRef, owner: string): Lease | undefined => {
    const row = q.lease.get(ref.id, ref.destination) as Lease | undefined;
    return row !== undefined && row.state === 'delivering' && row.owner === owner ? row : undefined;
  };
  const one = (ref: DeliveryRef) => {
    const row = q.get.get(ref.id, ref.destination) as Row | undefined;
    return row === undefined ? undefined : toDelivery(row);
  };

  return {
    durable,
    accept: (msg, deliveries, nowMs, dedupe) => {
      // acknowledged means durable: not into a database file that a restart will not find
      const notDurable = health?.notDurable();
      if (notDurable !== undefined) return Promise.reject(new Error(`the delivery store cannot write durably: ${notDurable}`));
      return write(() => {
        if (dedupe !== undefined && q.claimKey.run(msg.route, dedupe.key, nowMs + dedupe.ttlMs, nowMs).changes === 0) return 'duplicate' as const;
        q.insertMessage.run({
          ...msg,
          headers: JSON.stringify(msg.headers),
          trace: msg.trace ?? null,
          provider: msg.provider ?? null,
          eventId: msg.eventId ?? null,
          idempotencyKey: msg.idempotencyKey ?? null,
        });
        insertDeliveries(msg, deliveries, nowMs);
        return 'stored' as const;
      }, true);
    },
    claim: (route, destination, owner, nowMs, leaseUntil, limit) =>
      write(() => {
        q.recover.run(nowMs, route, destination, nowMs);
        const seqs = (q.claim.all({ owner, leaseUntil, route, destination, now: nowMs, limit }) as { seq: number }[]).map((r) => r.seq).sort((a, b) => a - b);
        return seqs.map((seq) => toDelivery(q.bySeq.get(seq) as Row));
      }),
    delivered: (ref, owner, nowMs, status, keepBody, then) =>
      write(() => {
        const row = leased(ref, owner);
        if (row === undefined) return;
        q.delivered.run({ now: nowMs, status, id: ref.id, destination: ref.destination });
        promoteNext(row, nowMs);
        if (then !== undefined) insertDeliveries(row_(ref, row), then, nowMs);
        if (!keepBody) q.dropBody.run(ref.id, ref.id);
      }),
    retry: (ref, owner, nextAt, error, status) =>
      write(() => {
        q.retry.run(nextAt, error, status ?? null, ref.id, ref.destination, owner);
      }),
    dead: (ref, owner, nowMs, error, status, keep, then) =>
      write(() => {
        const row = leased(ref, owner);
        if (row === undefined) return;
        if (keep) q.dead.run(nowMs, error, status ?? null, ref.id, ref.destination);
        else q.dropDelivery.run(ref.id, ref.destination);
        promoteNext(row, nowMs);
        if (then !== undefined) insertDeliveries(row_(ref, row), then, nowMs);
        if (!keep) q.dropOrphan.run(ref.id, ref.id);
      }),
    release: (ref, owner, nowMs) =>
      write(() => {
        q.release.run(nowMs, ref.id, ref.destination, owner);
      }),
    nextDueAt: (route, destination) => read(() => (q.nextDue.get({ route, destination }) as { t: number | null }).t ?? undefined),
    pending: (route, destination) => read(() => (q.pending.get(route, destination) as { n: number }).n),
    busy: (route, destination, orderKey) => read(() => q.keyBusy.get(route, destination, orderKey) !== undefined),
    deadCount: (route, destination) => read(() => (q.deadCount.get(route, destination) as { n: number }).n),
    listDead: (kind) => read(() => (q.listDead.all(kind) as Row[]).map(toDelivery)),
    replay: (ref, nowMs, from = ['dead']) =>
      write(() => {
        const delivered = from.includes('delivered') ? 1 : 0;
        return q.replay.run({ now: nowMs, id: ref.id, destination: ref.destination, delivered }).changes === 0 ? undefined : one(ref);
      }, true),
    cancel: (ref, nowMs) =>
      write(() => {
        const row = q.lease.get(ref.id, ref.destination) as Lease | undefined;
        if (row === undefined || q.cancel.run(ref.id, ref.destination).changes === 0) return undefined;
        promoteNext(row, nowMs);
        return one(ref);
      }, true),
    get: (id) => read(() => (q.ofMessage.all(id) as Row[]).map(toDelivery)),
    list: (query: ListQuery) =>
      read(() => {
        const where = ['m.kind = @kind'];
        if (query.destination !== undefined) where.push('d.destination = @destination');
        if (query.route !== undefined) where.push('m.route = @route');
        if (query.from !== undefined) where.push('m.created_at >= @from');
        if (query.to !== undefined) where.push('m.created_at < @to');
        if (query.states !== undefined) where.push(`d.state IN (${query.states.map((s) => `'${s}'`).join(', ')})`);
        // the states are the DeliveryState union, never request text: safe to inline
        const rows = db
          .prepare(`${SELECT} WHERE ${where.join(' AND ')} ORDER BY m.seq DESC, d.seq LIMIT @limit`)
          .all({ kind: query.kind, destination: query.destination ?? null, route: query.route ?? null, from: query.from ?? null, to: query.to ?? null, limit: query.limit }) as Row[];
        return rows.map(toDelivery);
      }),
    maintain: (nowMs) =>
      write(() => {
        q.forget.run(nowMs);
        for (const { route } of q.routes.all() as { route: string }[]) q.trim.run({ route, kept: RECENT_KEPT, before: nowMs - FINISHED_KEPT_MS });
      }),
  };
}

const row_ = (ref: DeliveryRef, row: { route: string }) => ({ id: ref.id, route: row.route });

function toDelivery(r: Row): StoredDelivery {
  return {
    id: r.id,
    route: r.route,
    kind: r.kind,
    createdAt: r.created_at,
    method: r.method,
    path: r.path,
    headers: JSON.parse(r.headers) as string[],
    body: r.body ?? Buffer.alloc(0),
    requestId: r.request_id,
    trace: r.trace ?? undefined,
    provider: r.provider ?? undefined,
    eventId: r.event_id ?? undefined,
    idempotencyKey: r.idempotency_key ?? undefined,
    destination: r.destination,
    state: r.state,
    attempts: r.attempts,
    nextAt: r.next_at,
    orderKey: r.order_key ?? undefined,
    expiresAt: r.expires_at ?? undefined,
    payload: r.payload ?? undefined,
    lastError: r.last_error ?? undefined,
    lastStatus: r.last_status ?? undefined,
    deadAt: r.dead_at ?? undefined,
    deliveredAt: r.delivered_at ?? undefined,
  };
}
