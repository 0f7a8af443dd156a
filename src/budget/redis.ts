import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { BucketShape, MirrorStore, MirrorView, Reservation, Settlement } from './mirror.js';

/**
 * Mirrors in Redis, shared by every gatehouse pointing at it: mirror.ts's reserve and settle in
 * Lua, so a reservation and a settlement are atomic across replicas. As the quota store does,
 * the operations of one turn of the event loop go to Redis in one script call. Each reservation
 * is also written to a ledger (a sorted set by expiry), so the points of a replica that died with
 * requests in flight stop counting as in flight after RESERVATION_TTL_MS instead of forever.
 * While Redis does not answer, a per-process mirror stands in (and says so once); Redis is tried
 * again after a second.
 */

/** Told once per transition: the shared mirror stopped answering, or answers again. */
export interface MirrorStoreObserver {
  storeState(store: string, state: 'up' | 'fallback', reason: string | undefined): void;
}

const RESERVATION_TTL_MS = 5 * 60_000;
const IDLE_TTL_MS = 10 * 60_000;
const MAX_BATCH = 128;
const RETRY_REDIS_MS = 1_000;

/**
 * KEYS: per operation, the mirror's hash and its reservation ledger. ARGV: now ms or '', the
 * number of operations, then per operation: 'r' or 's', the initial capacity and rate, then
 * 'r': cost, reservation id; 's': reservation id, reserved, charged, reset (0/1), reset capacity,
 * available, rate, pause ms, wall-clock ms of the answer (an older answer settled after a newer
 * one only refunds: it must not undo the newer one's figures).
 * Returns per operation: ok (1/0), wait ms, paused (1/0), then level, capacity, rate, in flight
 * and ms paused as strings (Lua numbers would come back cut to integers).
 */
const SCRIPT = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function f(x) return string.format('%.6f', x) end
local out = {}
local a = 3
local k = 1
for o = 1, tonumber(ARGV[2]) do
  local h = KEYS[k]
  local led = KEYS[k + 1]
  k = k + 2
  local typ = ARGV[a]
  local s = redis.call('HMGET', h, 'cap', 'rate', 'level', 'at', 'inflight', 'until', 'resetAt')
  local cap, rate, level, at, inflight, untl, resetAt
  if s[1] then
    cap = tonumber(s[1]); rate = tonumber(s[2]); level = tonumber(s[3]); at = tonumber(s[4]); inflight = tonumber(s[5]); untl = tonumber(s[6]); resetAt = tonumber(s[7]) or 0
  else
    cap = tonumber(ARGV[a + 1]); rate = tonumber(ARGV[a + 2]); level = cap; at = now; inflight = 0; untl = 0; resetAt = 0
  end
  local gone = redis.call('ZRANGEBYSCORE', led, '-inf', now)
  for _, m in ipairs(gone) do
    inflight = math.max(0, inflight - (tonumber(string.match(m, ':([%d%.]+)$')) or 0))
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', led, '-inf', now) end
  if cap > 0 and now > at then level = math.min(cap - inflight, level + rate * (now - at) / 1000) end
  if now > at then at = now end
  local ok, wait, paused = 1, 0, 0
  if typ == 'r' then
    local cost = tonumber(ARGV[a + 3])
    local id = ARGV[a + 4]
    a = a + 5
    if now < untl then
      ok = 0; wait = math.ceil(untl - now); paused = 1
    elseif cap > 0 and cost > 0 then
      local need = math.min(cost, cap)
      if level < need then
        ok = 0; wait = math.max(1, math.ceil((need - level) * 1000 / rate))
      end
    end
    if ok == 1 then
      level = level - cost
      inflight = inflight + cost
      if cost > 0 then redis.call('ZADD', led, now + ${RESERVATION_TTL_MS}, id .. ':' .. ARGV[a - 2]) end
    end
  else
    local id = ARGV[a + 3]
    local reserved = tonumber(ARGV[a + 4])
    local charged = tonumber(ARGV[a + 5])
    local reset = ARGV[a + 6]
    local pause = tonumber(ARGV[a + 10])
    local answeredAt = tonumber(ARGV[a + 11])
    local mine = 0
    if reserved > 0 then mine = redis.call('ZREM', led, id .. ':' .. ARGV[a + 4]) end
    if mine == 1 then inflight = math.max(0, inflight - reserved) end
    if reset == '1' and answeredAt >= resetAt then
      resetAt = answeredAt
      cap = tonumber(ARGV[a + 7]); level = tonumber(ARGV[a + 8]) - inflight; rate = tonumber(ARGV[a + 9])
    elseif mine == 1 then
      level = level + reserved - charged
    end
    if cap > 0 then level = math.min(level, cap - inflight) end
    if pause > 0 and now + pause > untl then untl = now + pause end
    a = a + 12
  end
  redis.call('HSET', h, 'cap', f(cap), 'rate', f(rate), 'level', f(level), 'at', f(at), 'inflight', f(inflight), 'until', f(untl), 'resetAt', f(resetAt))
  redis.call('PEXPIRE', h, ${IDLE_TTL_MS})
  redis.call('PEXPIRE', led, ${IDLE_TTL_MS})
  out[#out + 1] = ok
  out[#out + 1] = wait
  out[#out + 1] = paused
  out[#out + 1] = f(level)
  out[#out + 1] = f(cap)
  out[#out + 1] = f(rate)
  out[#out + 1] = f(inflight)
  out[#out + 1] = f(math.max(0, untl - now))
end
return out
`;

interface BudgetCommands {
  gatehouseBudget(numKeys: number, ...args: (string | number)[]): Promise<(number | string)[]>;
}

const defined = new WeakSet<Redis>();

function commands(client: Redis): BudgetCommands {
  if (!defined.has(client)) {
    client.defineCommand('gatehouseBudget', { lua: SCRIPT });
    defined.add(client);
  }
  return client as unknown as BudgetCommands;
}

interface Op {
  readonly key: string;
  readonly args: readonly (string | number)[];
  readonly resolve: (reply: readonly (number | string)[]) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * @param client the shared ioredis client, asked for on every call (a reload may replace it)
 * @param local the per-process stand-in while Redis does not answer
 * @param now only for tests: the time to use instead of the Redis server's clock
 */
export function createRedisMirrorStore(
  name: string,
  client: () => Redis,
  local: MirrorStore,
  observer: MirrorStoreObserver,
  now?: () => number,
): MirrorStore {
  let pending: Op[] = [];
  const seen = new Map<string, MirrorView>();
  const idPrefix = randomBytes(6).toString('base64url');
  let nextId = 0;
  let downUntil = 0;
  let down = false;

  function fallBack(err: unknown): void {
    downUntil = performance.now() + RETRY_REDIS_MS;
    if (down) return;
    down = true;
    observer.storeState(name, 'fallback', err instanceof Error ? err.message : 'not connected');
  }

  function useLocal(): boolean {
    if (performance.now() < downUntil) return true;
    let ready = false;
    try {
      ready = client().status === 'ready';
    } catch {
      ready = false;
    }
    if (!ready) fallBack(undefined);
    return !ready;
  }

  function flush(): void {
    const batch = pending;
    pending = [];
    for (let from = 0; from < batch.length; from += MAX_BATCH) send(batch.slice(from, from + MAX_BATCH));
  }

  function send(batch: readonly Op[]): void {
    const keys: string[] = [];
    const argv: (string | number)[] = [now === undefined ? '' : now(), batch.length];
    for (const op of batch) {
      keys.push(op.key, `${op.key}:r`);
      argv.push(...op.args);
    }
    let command: Promise<(number | string)[]>;
    try {
      command = commands(client()).gatehouseBudget(keys.length, ...keys, ...argv);
    } catch (err) {
      command = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    command.then(
      (reply) => {
        if (down) {
          down = false;
          observer.storeState(name, 'up', undefined);
        }
        batch.forEach((op, i) => op.resolve(reply.slice(i * 8, i * 8 + 8)));
      },
      (err: unknown) => {
        fallBack(err);
        for (const op of batch) op.reject(err);
      },
    );
  }

  function run(key: string, args: readonly (string | number)[]): Promise<readonly (number | string)[]> {
    return new Promise((resolve, reject) => {
      if (pending.length === 0) setImmediate(flush);
      pending.push({ key, args, resolve, reject });
    });
  }

  function remember(key: string, reply: readonly (number | string)[]): void {
    seen.delete(key);
    seen.set(key, {
      available: Math.floor(Math.max(0, Number(reply[3]))),
      capacity: Number(reply[4]),
      restoreRate: Number(reply[5]),
      inflight: Number(reply[6]),
      pausedForMs: Math.ceil(Number(reply[7])),
    });
    if (seen.size > 10_000) seen.delete(seen.keys().next().value!);
  }

  return {
    name,
    reserve(key, cost, shape: BucketShape): Reservation | Promise<Reservation> {
      if (useLocal()) return local.reserve(key, cost, shape);
      const id = `${idPrefix}.${(nextId++).toString(36)}`;
      return run(key, ['r', shape.capacity, shape.rate, cost, id]).then(
        (reply): Reservation => {
          remember(key, reply);
          return reply[0] === 1 ? { ok: true, id } : { ok: false, waitMs: Number(reply[1]), paused: reply[2] === 1 };
        },
        () => local.reserve(key, cost, shape),
      );
    },
    settle(key, x: Settlement, shape: BucketShape): void | Promise<void> {
      if (x.id === undefined && x.reserved > 0) return local.settle(key, x, shape); // reserved while Redis was down
      if (useLocal()) return local.settle(key, x, shape);
      const r = x.reset;
      return run(key, ['s', shape.capacity, shape.rate, x.id ?? '', x.reserved, x.charged, r === undefined ? '0' : '1', r?.capacity ?? 0, r?.available ?? 0, r?.rate ?? 0, x.pauseMs ?? 0, x.answeredAt ?? 0]).then(
        (reply) => remember(key, reply),
        () => undefined, // the next answer resets the mirror anyway
      );
    },
    view: (key) => (down ? local.view(key) : (seen.get(key) ?? local.view(key))),
    keys: () => [...new Set([...seen.keys(), ...local.keys()])],
    mode: () => (down ? 'fallback' : 'redis'),
  };
}
