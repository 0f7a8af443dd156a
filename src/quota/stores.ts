import type { Redis } from 'ioredis';
import { currentTat, DEFAULT_MAX_KEYS, hasToken, refundedTat, resultAt, type BucketResult, type BucketShape } from '../core/bucket.js';

/**
 * Where quota buckets live. One `take` covers every bucket of a request that lives in this store,
 * all or nothing: either each bucket gives a token, or none is touched — so a request refused by
 * one limit never uses up another. `memory` answers synchronously (the hot path stays free of
 * promises); `redis` runs one Lua script, atomic across every gatehouse sharing the server.
 */
export interface QuotaStore {
  readonly name: string;
  /** One token from each bucket `keys[i]` shaped `shapes[i]`, or none at all. */
  take(shapes: readonly BucketShape[], keys: readonly string[]): TakeOutcome | Promise<TakeOutcome>;
  /** Gives back the token each bucket gave: when a later store refused the same request. */
  refund(shapes: readonly BucketShape[], keys: readonly string[]): void | Promise<void>;
  /** `memory`; or for a shared store, `redis` while it answers and `fallback` while it does not. */
  mode(): StoreMode;
  /** Buckets of a quota's space that are not full; undefined where counting is not cheap. */
  countKeys(space: string): number | undefined;
  /** Stops background work (the fallback's Redis probe). */
  close?(): void;
}

export type StoreMode = 'memory' | 'redis' | 'fallback';

export interface TakeOutcome {
  /** Every bucket gave a token. When false, no bucket was changed. */
  readonly allowed: boolean;
  /** Per bucket, in the order asked. */
  readonly buckets: readonly BucketResult[];
  /** Answered by the per-process fallback because the shared store did not. */
  readonly fallback: boolean;
}

// ---------------------------------------------------------------- memory

const SWEEP_EVERY = 32;
const SWEEP_ENTRIES = 64;
/** At the cap: how many of the least recently used buckets are looked at for full ones. */
const EVICT_SCAN = 32;

/** One bucket of a memory store, linked into its space's recency list. */
interface Bucket {
  readonly key: string;
  tat: number;
  /** Less recently used. */
  prev: Bucket | undefined;
  /** More recently used. */
  next: Bucket | undefined;
}

/** One quota's buckets: by key, and in a list from least (`lru`) to most (`mru`) recently used. */
interface Space {
  readonly buckets: Map<string, Bucket>;
  lru: Bucket | undefined;
  mru: Bucket | undefined;
  sweep: MapIterator<Bucket> | undefined;
  untilSweep: number;
}

function unlink(space: Space, b: Bucket): void {
  if (b.prev === undefined) space.lru = b.next;
  else b.prev.next = b.next;
  if (b.next === undefined) space.mru = b.prev;
  else b.next.prev = b.prev;
  b.prev = b.next = undefined;
}

function append(space: Space, b: Bucket): void {
  b.prev = space.mru;
  if (space.mru === undefined) space.lru = b;
  else space.mru.next = b;
  space.mru = b;
}

/** Makes `b` the most recently used bucket of its space. */
function touch(space: Space, b: Bucket): void {
  if (space.mru === b) return;
  unlink(space, b);
  append(space, b);
}

function forget(space: Space, b: Bucket): void {
  unlink(space, b);
  space.buckets.delete(b.key);
}

/**
 * Room for one more bucket in a space at its cap: the full buckets among the EVICT_SCAN least
 * recently used are forgotten (they hold no information); when none of them is, the least
 * recently used bucket goes.
 */
function evict(space: Space, nowMs: number): void {
  let b = space.lru;
  let freed = false;
  for (let seen = 0; b !== undefined && seen < EVICT_SCAN; seen++) {
    const next = b.next;
    if (b.tat <= nowMs) {
      forget(space, b);
      freed = true;
    }
    b = next;
  }
  if (!freed && space.lru !== undefined) forget(space, space.lru);
}

/**
 * Buckets in this process, one space per quota (its `space`): a Map from key to bucket, and the
 * buckets in order of use. Full buckets hold no information and are forgotten by an incremental
 * sweep (64 entries every 32 takes of the space), so memory follows the number of recently
 * active keys without a timer or a stop-the-world scan. A space also holds at most `maxKeys`
 * buckets, whatever keys clients send: at the cap, a new key first makes room by forgetting full
 * buckets among the least recently used, and else the least recently used bucket (its client
 * starts over with a full bucket: the price of bounded memory, paid by the longest-idle key).
 */
export function createMemoryQuotaStore(name: string, now: () => number): QuotaStore {
  const spaces = new Map<string, Space>();

  function spaceOf(shape: BucketShape): Space {
    const id = shape.space ?? '';
    let space = spaces.get(id);
    if (space === undefined) {
      space = { buckets: new Map(), lru: undefined, mru: undefined, sweep: undefined, untilSweep: SWEEP_EVERY };
      spaces.set(id, space);
    }
    return space;
  }

  function sweepSome(space: Space, nowMs: number): void {
    space.untilSweep = SWEEP_EVERY;
    space.sweep ??= space.buckets.values();
    for (let i = 0; i < SWEEP_ENTRIES; i++) {
      const next = space.sweep.next();
      if (next.done === true) {
        space.sweep = undefined;
        return;
      }
      if (next.value.tat <= nowMs) forget(space, next.value);
    }
  }

  function insert(shape: BucketShape, space: Space, key: string, tat: number, nowMs: number): void {
    if (space.buckets.size >= (shape.maxKeys ?? DEFAULT_MAX_KEYS)) evict(space, nowMs);
    const b: Bucket = { key, tat, prev: undefined, next: undefined };
    space.buckets.set(key, b);
    append(space, b);
  }

  return {
    name,
    take(shapes, keys) {
      const nowMs = now();
      const n = keys.length;
      const spaceList = new Array<Space>(n);
      const found = new Array<Bucket | undefined>(n);
      const current = new Array<number>(n);
      let allowed = true;
      for (let i = 0; i < n; i++) {
        const space = spaceOf(shapes[i]!);
        if (--space.untilSweep === 0) sweepSome(space, nowMs);
        const b = space.buckets.get(keys[i]!);
        spaceList[i] = space;
        found[i] = b;
        const tat = currentTat(b?.tat, nowMs);
        current[i] = tat;
        if (!hasToken(tat, nowMs, shapes[i]!)) allowed = false;
      }
      const buckets = new Array<BucketResult>(n);
      for (let i = 0; i < n; i++) {
        const shape = shapes[i]!;
        const b = found[i];
        let tat = current[i]!;
        if (allowed) {
          tat += shape.intervalMs;
          if (b === undefined) insert(shape, spaceList[i]!, keys[i]!, tat, nowMs);
          else {
            b.tat = tat;
            touch(spaceList[i]!, b);
          }
        } else if (b !== undefined) {
          touch(spaceList[i]!, b); // refused, unchanged, but in use: not the one to forget
        }
        buckets[i] = resultAt(tat, nowMs, shape, !allowed);
      }
      return { allowed, buckets, fallback: false };
    },
    refund(shapes, keys) {
      const nowMs = now();
      for (let i = 0; i < keys.length; i++) {
        const space = spaceOf(shapes[i]!);
        const b = space.buckets.get(keys[i]!);
        if (b === undefined) continue;
        const back = refundedTat(b.tat, nowMs, shapes[i]!);
        if (back <= nowMs) forget(space, b);
        else b.tat = back;
      }
    },
    mode: () => 'memory',
    countKeys(space) {
      const buckets = spaces.get(space)?.buckets;
      if (buckets === undefined) return 0;
      const nowMs = now();
      let n = 0;
      for (const b of buckets.values()) if (b.tat > nowMs) n++;
      return n;
    },
  };
}

// ---------------------------------------------------------------- redis

/**
 * Both scripts start with the time: the Redis server's own clock (one clock for every replica),
 * unless ARGV[1] gives one (tests).
 */
const NOW = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
`;

/**
 * bucket.ts in Lua. One call carries every take that gatehouse had to make in one turn of its
 * event loop; each take covers the keys of one request, all or nothing, and the takes are
 * applied in order (two takes of the same bucket see each other). Redis runs a script
 * atomically, so no other gatehouse can take a token between a check and its write.
 * KEYS: the buckets of every take, in order. ARGV: now ms or '', the number of takes, then per
 * take its number of keys and, per key, interval ms and burst.
 * Returns, per take: allowed (1/0), then remaining, reset ms, retry-after ms per key.
 */
const TAKE_SCRIPT = `${NOW}local eps = 0.000001
local out = {}
local a = 3
local k = 0
for t = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local tats = {}
  local allowed = 1
  for i = 1, n do
    local interval = tonumber(ARGV[a + 2 * i - 2])
    local burst = tonumber(ARGV[a + 2 * i - 1])
    local tat = tonumber(redis.call('GET', KEYS[k + i])) or now
    if tat < now then tat = now end
    tats[i] = tat
    if tat + interval - now > interval * burst + eps then allowed = 0 end
  end
  out[#out + 1] = allowed
  for i = 1, n do
    local interval = tonumber(ARGV[a + 2 * i - 2])
    local capacity = interval * tonumber(ARGV[a + 2 * i - 1])
    local tat = tats[i]
    local retry = 0
    if allowed == 1 then
      tat = tat + interval
      redis.call('SET', KEYS[k + i], string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)))
    else
      local over = tat + interval - now - capacity
      if over > eps then retry = math.ceil(over) end
    end
    out[#out + 1] = math.max(0, math.floor((capacity - (tat - now)) / interval + eps))
    out[#out + 1] = math.max(0, math.ceil(tat - now - eps))
    out[#out + 1] = retry
  end
  a = a + 2 * n
  k = k + n
end
return out
`;

/** bucket.ts's refundedTat for each key. ARGV: now ms or '', then interval ms per bucket. */
const REFUND_SCRIPT = `${NOW}for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat then
    tat = tat - tonumber(ARGV[i + 1])
    if tat <= now then redis.call('DEL', KEYS[i])
    else redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now))) end
  end
end
return 1
`;

interface QuotaCommands {
  gatehouseQuotaTake(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
  gatehouseQuotaRefund(numKeys: number, ...args: (string | number)[]): Promise<number>;
}

const defined = new WeakSet<Redis>();

function commands(client: Redis): QuotaCommands {
  if (!defined.has(client)) {
    // numberOfKeys left out: each call says how many keys it passes. ioredis adds its keyPrefix
    // to them and falls back from EVALSHA to EVAL after a Redis restart.
    client.defineCommand('gatehouseQuotaTake', { lua: TAKE_SCRIPT });
    client.defineCommand('gatehouseQuotaRefund', { lua: REFUND_SCRIPT });
    defined.add(client);
  }
  return client as unknown as QuotaCommands;
}

/** Most takes in one script call; a busier turn of the event loop sends several calls. */
const MAX_BATCH = 128;

interface PendingTake {
  readonly shapes: readonly BucketShape[];
  readonly keys: readonly string[];
  readonly resolve: (outcome: TakeOutcome) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Buckets in Redis, shared by every gatehouse pointing at it. The takes of one turn of the event
 * loop go to Redis together, in one script call (flushed by setImmediate, right after the turn's
 * I/O): under load the per-command cost of the client (a command object, a timer, a write, a
 * reply) is paid once per turn rather than once per request. Rejects when Redis does not answer
 * (the client fails fast: no offline queue, `commandTimeout`); `createFallbackQuotaStore` turns
 * that into a per-process decision.
 * @param client the shared ioredis client, asked for on every call (a reload may replace it)
 * @param now only for tests: the time to use instead of the Redis server's clock
 */
export function createRedisQuotaStore(name: string, client: () => Redis, now?: () => number) {
  let pending: PendingTake[] = [];

  function flush(): void {
    const batch = pending;
    pending = [];
    for (let from = 0; from < batch.length; from += MAX_BATCH) send(batch.slice(from, from + MAX_BATCH));
  }

  function send(batch: readonly PendingTake[]): void {
    const keys: string[] = [];
    const argv: (string | number)[] = [now === undefined ? '' : now(), batch.length];
    for (const p of batch) {
      argv.push(p.keys.length);
      for (let i = 0; i < p.keys.length; i++) {
        keys.push(p.keys[i]!);
        argv.push(p.shapes[i]!.intervalMs, p.shapes[i]!.burst);
      }
    }
    let command: Promise<number[]>;
    try {
      command = commands(client()).gatehouseQuotaTake(keys.length, ...keys, ...argv);
    } catch (err) {
      command = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    command.then(
      (reply) => {
        let at = 0;
        for (const p of batch) {
          const allowed = reply[at++] === 1;
          const buckets: BucketResult[] = new Array<BucketResult>(p.keys.length);
          for (let i = 0; i < p.keys.length; i++, at += 3) buckets[i] = { remaining: reply[at]!, resetMs: reply[at + 1]!, retryAfterMs: reply[at + 2]! };
          p.resolve({ allowed, buckets, fallback: false });
        }
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
  }

  return {
    name,
    take(shapes: readonly BucketShape[], keys: readonly string[]): Promise<TakeOutcome> {
      return new Promise<TakeOutcome>((resolve, reject) => {
        if (pending.length === 0) setImmediate(flush);
        pending.push({ shapes, keys, resolve, reject });
      });
    },
    async refund(shapes: readonly BucketShape[], keys: readonly string[]): Promise<void> {
      const argv: (string | number)[] = [now === undefined ? '' : now()];
      for (const s of shapes) argv.push(s.intervalMs);
      await commands(client()).gatehouseQuotaRefund(keys.length, ...keys, ...argv);
    },
  };
}

export interface FallbackObserver {
  /** Called once per transition: the shared store stopped answering, or answers again. */
  storeState(store: string, state: 'up' | 'fallback', reason: string | undefined): void;
}

export interface FallbackOptions {
  /** Whether the client is connected; when not, decisions go local at once, without a try. */
  readonly isReady: () => boolean;
  /** A cheap round trip (PING) that tells the store answers again. */
  readonly probe: () => Promise<unknown>;
  readonly probeIntervalMs?: number;
  /** Registers a listener for the client's (re)connection: the store then probes at once. */
  readonly onReady?: (listener: () => void) => void;
  readonly observer: FallbackObserver;
}

/**
 * A shared store with a per-process stand-in (the idea of rate-limiter-flexible's
 * `insuranceLimiter`, plus what it lacks: it would keep trying Redis on every request, making
 * each one wait for the timeout while Redis hangs, and says nothing when it switches). While
 * Redis answers, decisions are Redis's; the first failure (refused, reset, or no answer within
 * the client's `commandTimeout`, 100 ms by default) switches this store to its local buckets,
 * logs once, and starts probing in the background; the first probe that answers switches back.
 * No request ever waits for Redis longer than one `commandTimeout`.
 */
export function createFallbackQuotaStore(
  shared: ReturnType<typeof createRedisQuotaStore>,
  local: QuotaStore,
  options: FallbackOptions,
): QuotaStore {
  const { isReady, probe, observer } = options;
  const probeIntervalMs = options.probeIntervalMs ?? 250;
  let down = false;
  let prober: NodeJS.Timeout | undefined;
  let probing = false;

  function fallBack(err: unknown): void {
    if (down) return;
    down = true;
    observer.storeState(shared.name, 'fallback', err instanceof Error ? err.message : 'not connected');
    prober = setInterval(tryProbe, probeIntervalMs);
    prober.unref();
  }

  function tryProbe(): void {
    if (probing || !isReady()) return;
    probing = true;
    probe().then(
      () => {
        probing = false;
        if (!down) return;
        down = false;
        clearInterval(prober);
        prober = undefined;
        observer.storeState(shared.name, 'up', undefined);
      },
      () => (probing = false),
    );
  }

  options.onReady?.(() => {
    if (down) tryProbe();
  });

  const local_ = (shapes: readonly BucketShape[], keys: readonly string[]): TakeOutcome => {
    const outcome = local.take(shapes, keys) as TakeOutcome; // a memory store answers synchronously
    return { allowed: outcome.allowed, buckets: outcome.buckets, fallback: true };
  };

  return {
    name: shared.name,
    take(shapes, keys) {
      if (down) return local_(shapes, keys);
      if (!isReady()) {
        fallBack(undefined);
        return local_(shapes, keys);
      }
      return shared.take(shapes, keys).catch((err: unknown) => {
        fallBack(err);
        return local_(shapes, keys);
      });
    },
    refund(shapes, keys) {
      if (down) return local.refund(shapes, keys);
      return shared.refund(shapes, keys).catch(() => undefined); // best effort: the bucket refills anyway
    },
    // what a decision would use right now: before the first connection, too, that is local
    mode: () => (down || !isReady() ? 'fallback' : 'redis'),
    countKeys: () => undefined,
    close() {
      clearInterval(prober);
      prober = undefined;
    },
  };
}
