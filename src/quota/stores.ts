import type { Redis } from 'ioredis';
import { currentTat, hasToken, refundedTat, resultAt, type BucketResult, type BucketShape } from './bucket.js';

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
  /** Buckets that are not full, among keys starting with `prefix`; undefined where counting is not cheap. */
  countKeys(prefix: string): number | undefined;
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

/**
 * Buckets in this process: a Map from key to `tat`. Full buckets are forgotten by an incremental
 * sweep (64 entries every 32 takes), so memory follows the number of recently active keys
 * without a timer or a stop-the-world scan.
 */
export function createMemoryQuotaStore(name: string, now: () => number): QuotaStore {
  const tats = new Map<string, number>();
  let sweep: MapIterator<[string, number]> | undefined;
  let untilSweep = SWEEP_EVERY;

  function sweepSome(nowMs: number): void {
    untilSweep = SWEEP_EVERY;
    sweep ??= tats.entries();
    for (let i = 0; i < SWEEP_ENTRIES; i++) {
      const next = sweep.next();
      if (next.done === true) {
        sweep = undefined;
        return;
      }
      if (next.value[1] <= nowMs) tats.delete(next.value[0]);
    }
  }

  return {
    name,
    take(shapes, keys) {
      const nowMs = now();
      if (--untilSweep === 0) sweepSome(nowMs);
      const n = keys.length;
      const current = new Array<number>(n);
      let allowed = true;
      for (let i = 0; i < n; i++) {
        const tat = currentTat(tats.get(keys[i]!), nowMs);
        current[i] = tat;
        if (!hasToken(tat, nowMs, shapes[i]!)) allowed = false;
      }
      const buckets = new Array<BucketResult>(n);
      for (let i = 0; i < n; i++) {
        const shape = shapes[i]!;
        let tat = current[i]!;
        if (allowed) {
          tat += shape.intervalMs;
          tats.set(keys[i]!, tat);
        }
        buckets[i] = resultAt(tat, nowMs, shape, !allowed);
      }
      return { allowed, buckets, fallback: false };
    },
    refund(shapes, keys) {
      const nowMs = now();
      for (let i = 0; i < keys.length; i++) {
        const tat = tats.get(keys[i]!);
        if (tat === undefined) continue;
        const back = refundedTat(tat, nowMs, shapes[i]!);
        if (back <= nowMs) tats.delete(keys[i]!);
        else tats.set(keys[i]!, back);
      }
    },
    mode: () => 'memory',
    countKeys(prefix) {
      const nowMs = now();
      let n = 0;
      for (const [key, tat] of tats) if (tat > nowMs && key.startsWith(prefix)) n++;
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
 * bucket.ts in Lua, for every key of one request at once; Redis runs a script atomically, so
 * no other gatehouse can take a token between the check and the write.
 * KEYS: the buckets. ARGV: now ms or '', then interval ms and burst per bucket.
 * Returns: allowed (1/0), then remaining, reset ms, retry-after ms per bucket.
 */
const TAKE_SCRIPT = `${NOW}local eps = 0.000001
local tats = {}
local allowed = 1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  if tat + interval - now > interval * burst + eps then allowed = 0 end
end
local out = { allowed }
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local capacity = interval * tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  local retry = 0
  if allowed == 1 then
    tat = tat + interval
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)))
  else
    local over = tat + interval - now - capacity
    if over > eps then retry = math.ceil(over) end
  end
  out[#out + 1] = math.max(0, math.floor((capacity - (tat - now)) / interval + eps))
  out[#out + 1] = math.max(0, math.ceil(tat - now - eps))
  out[#out + 1] = retry
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

/**
 * Buckets in Redis, shared by every gatehouse pointing at it. Throws when Redis does not answer
 * (the client fails fast: no offline queue, `commandTimeout`); `createFallbackQuotaStore` turns
 * that into a per-process decision.
 * @param client the shared ioredis client, asked for on every call (a reload may replace it)
 * @param now only for tests: the time to use instead of the Redis server's clock
 */
export function createRedisQuotaStore(name: string, client: () => Redis, now?: () => number) {
  const args = (shapes: readonly BucketShape[], keys: readonly string[], perBucket: (s: BucketShape) => (string | number)[]) => {
    const out: (string | number)[] = [...keys, now === undefined ? '' : now()];
    for (const s of shapes) out.push(...perBucket(s));
    return out;
  };
  return {
    name,
    async take(shapes: readonly BucketShape[], keys: readonly string[]): Promise<TakeOutcome> {
      const reply = await commands(client()).gatehouseQuotaTake(keys.length, ...args(shapes, keys, (s) => [s.intervalMs, s.burst]));
      const buckets: BucketResult[] = [];
      for (let i = 0; i < keys.length; i++) {
        buckets.push({ remaining: reply[1 + 3 * i]!, resetMs: reply[2 + 3 * i]!, retryAfterMs: reply[3 + 3 * i]! });
      }
      return { allowed: reply[0] === 1, buckets, fallback: false };
    },
    async refund(shapes: readonly BucketShape[], keys: readonly string[]): Promise<void> {
      await commands(client()).gatehouseQuotaRefund(keys.length, ...args(shapes, keys, (s) => [s.intervalMs]));
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
