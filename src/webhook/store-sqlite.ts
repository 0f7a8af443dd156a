import type { SqliteDatabase, SqliteHealth } from '../stores/stores.js';
import { RECENT_KEPT, type EventState, type IncomingEvent, type StoredEvent, type WebhookStore } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS webhook_events (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  id           TEXT NOT NULL UNIQUE,
  route        TEXT NOT NULL,
  provider     TEXT NOT NULL,
  event_id     TEXT NOT NULL,
  received_at  INTEGER NOT NULL,
  method       TEXT NOT NULL,
  path         TEXT NOT NULL,
  headers      TEXT NOT NULL,
  body         BLOB,
  order_key    TEXT,
  request_id   TEXT NOT NULL,
  trace        TEXT,
  state        TEXT NOT NULL,
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_at      INTEGER NOT NULL,
  owner        TEXT,
  lease_until  INTEGER,
  last_error   TEXT,
  dead_at      INTEGER,
  delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_events_due ON webhook_events (route, state, next_at);
CREATE INDEX IF NOT EXISTS webhook_events_order ON webhook_events (route, order_key, seq) WHERE order_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS webhook_events_dead ON webhook_events (dead_at) WHERE dead_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS webhook_dedupe (
  route      TEXT NOT NULL,
  event_id   TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (route, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_dedupe_expiry ON webhook_dedupe (expires_at);
`;

interface Row {
  seq: number;
  id: string;
  route: string;
  provider: string;
  event_id: string;
  received_at: number;
  method: string;
  path: string;
  headers: string;
  body: Buffer | null;
  order_key: string | null;
  request_id: string;
  trace: string | null;
  state: EventState;
  attempts: number;
  next_at: number;
  owner: string | null;
  lease_until: number | null;
  last_error: string | null;
  dead_at: number | null;
  delivered_at: number | null;
}

const stores = new WeakMap<SqliteDatabase, WebhookStore>();

/**
 * The embedded store: one better-sqlite3 database (WAL, synchronous=FULL, so a commit is on disk
 * when it returns). Writes made in the same turn of the event loop share one transaction (group
 * commit): under load many webhooks cost one fsync. `durable: false` serves `memory` stores with
 * an in-memory database.
 */
export function sqliteWebhookStore(db: SqliteDatabase, durable: boolean, health?: SqliteHealth): WebhookStore {
  let store = stores.get(db);
  if (store === undefined) {
    store = createSqliteWebhookStore(db, durable, health);
    stores.set(db, store);
  }
  return store;
}

function createSqliteWebhookStore(db: SqliteDatabase, durable: boolean, health: SqliteHealth | undefined): WebhookStore {
  db.exec(SCHEMA);
  const q = {
    claimId: db.prepare(
      `INSERT INTO webhook_dedupe (route, event_id, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (route, event_id) DO UPDATE SET expires_at = excluded.expires_at WHERE webhook_dedupe.expires_at <= ?`,
    ),
    keyBusy: db.prepare(`SELECT 1 FROM webhook_events WHERE route = ? AND order_key = ? AND state IN ('pending', 'waiting', 'delivering') LIMIT 1`),
    insert: db.prepare(
      `INSERT INTO webhook_events (id, route, provider, event_id, received_at, method, path, headers, body, order_key, request_id, trace, state, next_at)
       VALUES (@id, @route, @provider, @eventId, @receivedAt, @method, @path, @headers, @body, @orderKey, @requestId, @trace, @state, @receivedAt)`,
    ),
    recover: db.prepare(
      `UPDATE webhook_events SET state = 'pending', owner = NULL, lease_until = NULL, next_at = ? WHERE route = ? AND state = 'delivering' AND lease_until <= ?`,
    ),
    claim: db.prepare(
      `UPDATE webhook_events SET state = 'delivering', owner = @owner, lease_until = @leaseUntil, attempts = attempts + 1
       WHERE seq IN (SELECT seq FROM webhook_events WHERE route = @route AND state = 'pending' AND next_at <= @now ORDER BY next_at, seq LIMIT @limit)
       RETURNING *`,
    ),
    get: db.prepare(`SELECT * FROM webhook_events WHERE id = ?`),
    delivered: db.prepare(
      `UPDATE webhook_events SET state = 'delivered', delivered_at = @now, dead_at = NULL, owner = NULL, lease_until = NULL, last_error = NULL,
       body = CASE WHEN @keep = 1 THEN body ELSE NULL END WHERE id = @id`,
    ),
    promote: db.prepare(
      `UPDATE webhook_events SET state = 'pending', next_at = ?
       WHERE seq = (SELECT seq FROM webhook_events WHERE route = ? AND order_key = ? AND state = 'waiting' ORDER BY seq LIMIT 1)`,
    ),
    retry: db.prepare(
      `UPDATE webhook_events SET state = 'pending', next_at = ?, last_error = ?, owner = NULL, lease_until = NULL WHERE id = ? AND owner = ? AND state = 'delivering'`,
    ),
    dead: db.prepare(
      `UPDATE webhook_events SET state = 'dead', dead_at = ?, last_error = ?, owner = NULL, lease_until = NULL, order_key = NULL WHERE id = ?`,
    ),
    drop: db.prepare(`DELETE FROM webhook_events WHERE id = ?`),
    release: db.prepare(
      `UPDATE webhook_events SET state = 'pending', next_at = ?, attempts = max(attempts - 1, 0), owner = NULL, lease_until = NULL
       WHERE id = ? AND owner = ? AND state = 'delivering'`,
    ),
    nextDue: db.prepare(
      `SELECT min(t) AS t FROM (SELECT min(next_at) AS t FROM webhook_events WHERE route = @route AND state = 'pending'
       UNION ALL SELECT min(lease_until) FROM webhook_events WHERE route = @route AND state = 'delivering')`,
    ),
    pending: db.prepare(`SELECT count(*) AS n FROM webhook_events WHERE route = ? AND state IN ('pending', 'waiting', 'delivering')`),
    listDead: db.prepare(`SELECT * FROM webhook_events WHERE dead_at IS NOT NULL ORDER BY dead_at, seq LIMIT 1000`),
    replay: db.prepare(`UPDATE webhook_events SET state = 'pending', attempts = 0, next_at = ?, order_key = NULL WHERE id = ? AND state = 'dead'`),
    recent: db.prepare(`SELECT * FROM webhook_events WHERE route = ? ORDER BY seq DESC LIMIT ?`),
    forget: db.prepare(`DELETE FROM webhook_dedupe WHERE expires_at <= ?`),
    finishedRoutes: db.prepare(`SELECT route, count(*) AS n FROM webhook_events WHERE state = 'delivered' GROUP BY route`),
    trim: db.prepare(
      `DELETE FROM webhook_events WHERE route = @route AND state = 'delivered'
       AND seq <= (SELECT seq FROM webhook_events WHERE route = @route AND state = 'delivered' ORDER BY seq DESC LIMIT 1 OFFSET @kept)`,
    ),
  };

  // ---- group commit: every write queued in one turn runs in one transaction, each in a savepoint.
  // Only an acceptance must reach the disk before it returns (the provider is told 200 next):
  // bookkeeping (claims, outcomes) commits with synchronous=NORMAL, which in WAL mode survives
  // a crash of the process (the OS has the pages) and is fsynced by the next durable commit.
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

  /** The next event waiting behind a finished one with the same ordering key becomes due. */
  const promoteNext = (row: Row | undefined, nowMs: number) => {
    if (row?.order_key != null) q.promote.run(nowMs, row.route, row.order_key);
  };

  return {
    durable,
    accept: (ev: IncomingEvent, ttlMs: number, nowMs: number) => {
      // acknowledged means durable: not into a database file that a restart will not find
      const notDurable = health?.notDurable();
      if (notDurable !== undefined) return Promise.reject(new Error(`the webhook store cannot write durably: ${notDurable}`));
      return write(() => {
        if (q.claimId.run(ev.route, ev.eventId, nowMs + ttlMs, nowMs).changes === 0) return 'duplicate' as const;
        const orderKey = ev.orderKey ?? null;
        const state = orderKey !== null && q.keyBusy.get(ev.route, orderKey) !== undefined ? 'waiting' : 'pending';
        q.insert.run({ ...ev, headers: JSON.stringify(ev.headers), orderKey, trace: ev.trace ?? null, state });
        return 'stored' as const;
      }, true);
    },
    claim: (route, owner, nowMs, leaseUntil, limit) =>
      write(() => {
        q.recover.run(nowMs, route, nowMs);
        return (q.claim.all({ owner, leaseUntil, route, now: nowMs, limit }) as Row[]).sort((a, b) => a.seq - b.seq).map(toEvent);
      }),
    delivered: (id, nowMs, keepBody) =>
      write(() => {
        const row = q.get.get(id) as Row | undefined;
        if (row === undefined || row.state === 'delivered') return;
        q.delivered.run({ now: nowMs, keep: keepBody ? 1 : 0, id });
        promoteNext(row, nowMs);
      }),
    retry: (id, owner, nextAt, error) =>
      write(() => {
        q.retry.run(nextAt, error, id, owner);
      }),
    dead: (id, owner, nowMs, error, keep) =>
      write(() => {
        const row = q.get.get(id) as Row | undefined;
        if (row === undefined || row.state !== 'delivering' || row.owner !== owner) return;
        if (keep) q.dead.run(nowMs, error, id);
        else q.drop.run(id);
        promoteNext(row, nowMs);
      }),
    release: (id, owner, nowMs) =>
      write(() => {
        q.release.run(nowMs, id, owner);
      }),
    nextDueAt: (route) => read(() => (q.nextDue.get({ route }) as { t: number | null }).t ?? undefined),
    pending: (route) => read(() => (q.pending.get(route) as { n: number }).n),
    listDead: () => read(() => (q.listDead.all() as Row[]).map(toEvent)),
    replay: (id, nowMs) =>
      write(() => {
        const row = q.get.get(id) as Row | undefined;
        if (row === undefined || row.dead_at === null) return undefined;
        q.replay.run(nowMs, id);
        return toEvent(q.get.get(id) as Row);
      }, true),
    recent: (route, limit) => read(() => (q.recent.all(route, limit) as Row[]).map(toEvent)),
    maintain: (nowMs) =>
      write(() => {
        q.forget.run(nowMs);
        for (const { route, n } of q.finishedRoutes.all() as { route: string; n: number }[]) {
          if (n > RECENT_KEPT) q.trim.run({ route, kept: RECENT_KEPT });
        }
      }),
  };
}

function toEvent(r: Row): StoredEvent {
  return {
    id: r.id,
    route: r.route,
    provider: r.provider,
    eventId: r.event_id,
    receivedAt: r.received_at,
    method: r.method,
    path: r.path,
    headers: JSON.parse(r.headers) as string[],
    body: r.body ?? Buffer.alloc(0),
    orderKey: r.order_key ?? undefined,
    requestId: r.request_id,
    trace: r.trace ?? undefined,
    state: r.state,
    attempts: r.attempts,
    nextAt: r.next_at,
    lastError: r.last_error ?? undefined,
    deadAt: r.dead_at ?? undefined,
    deliveredAt: r.delivered_at ?? undefined,
  };
}
