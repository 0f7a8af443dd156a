import type { Redis } from 'ioredis';
import { RECENT_KEPT, type EventState, type IncomingEvent, type StoredEvent, type WebhookStore } from './store.js';

/*
 * The shared store: every replica of gatehouse uses the same Redis, so a duplicate that reaches
 * another replica is still refused (SET NX on the event id, in the same script that stores the
 * event) and an event is leased to one replica at a time (a sorted set of lease expiries; a
 * replica that dies loses its leases when they expire). Each step is one Lua script: atomic.
 *
 * Keys, under the store's keyPrefix + `webhook:`:
 *   dedupe:<route>:<eventId>  the event id claim, expires after dedupe.ttl
 *   ev:<id>                   the event (hash); finished events expire after a day
 *   due:<route>               zset id -> when due;  lease:<route>  zset id -> lease expiry
 *   open:<route>              set of ids not yet delivered or dead (the pending gauge)
 *   order:<route>:<key>       list: events of one ordering key, head = the one that may go
 *   recent:<route>            list of the latest ids;  dead  zset id -> when it died
 */

const FINISHED_TTL_S = 86_400;

const PROMOTE = `
local function promote(P, route, okey, id, now)
  if not okey or okey == '' then return end
  local o = P..'order:'..route..':'..okey
  redis.call('LREM', o, 1, id)
  local nxt = redis.call('LINDEX', o, 0)
  if nxt then
    redis.call('HSET', P..'ev:'..nxt, 'state', 'pending', 'nextAt', now)
    redis.call('ZADD', P..'due:'..route, now, nxt)
  end
end
`;

/** Stops a script unless ARGV[3] still holds the lease on event ARGV[2]: a late outcome is ignored. */
const LEASED = `
local P, id = ARGV[1], ARGV[2]
local k = P..'ev:'..id
if redis.call('HGET', k, 'state') ~= 'delivering' or redis.call('HGET', k, 'owner') ~= ARGV[3] then return 0 end
local route = redis.call('HGET', k, 'route')
`;

const SCRIPTS = {
  // ARGV: P route eventId id ttlMs now orderKey provider receivedAt method path headers body requestId trace
  whAccept: `
local P, route, id, now, okey = ARGV[1], ARGV[2], ARGV[4], ARGV[6], ARGV[7]
if not redis.call('SET', P..'dedupe:'..route..':'..ARGV[3], id, 'NX', 'PX', ARGV[5]) then return 0 end
local state = 'pending'
if okey ~= '' and redis.call('RPUSH', P..'order:'..route..':'..okey, id) > 1 then state = 'waiting' end
redis.call('HSET', P..'ev:'..id, 'id', id, 'route', route, 'eventId', ARGV[3], 'provider', ARGV[8], 'receivedAt', ARGV[9],
  'method', ARGV[10], 'path', ARGV[11], 'headers', ARGV[12], 'body', ARGV[13], 'orderKey', okey, 'requestId', ARGV[14],
  'trace', ARGV[15], 'state', state, 'attempts', 0, 'nextAt', now)
if state == 'pending' then redis.call('ZADD', P..'due:'..route, now, id) end
redis.call('SADD', P..'open:'..route, id)
redis.call('LPUSH', P..'recent:'..route, id)
redis.call('LTRIM', P..'recent:'..route, 0, ${RECENT_KEPT - 1})
return 1`,
  // ARGV: P route now leaseUntil limit owner
  whClaim: `
local P, route, now = ARGV[1], ARGV[2], ARGV[3]
local due, lease = P..'due:'..route, P..'lease:'..route
for _, id in ipairs(redis.call('ZRANGEBYSCORE', lease, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', lease, id)
  redis.call('ZADD', due, now, id)
  redis.call('HSET', P..'ev:'..id, 'state', 'pending', 'owner', '')
end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))) do
  redis.call('ZREM', due, id)
  local k = P..'ev:'..id
  if redis.call('EXISTS', k) == 1 then
    redis.call('ZADD', lease, ARGV[4], id)
    redis.call('HSET', k, 'state', 'delivering', 'owner', ARGV[6])
    redis.call('HINCRBY', k, 'attempts', 1)
    out[#out + 1] = redis.call('HGETALL', k)
  end
end
return out`,
  // ARGV: P id now keepBody
  whDelivered:
    PROMOTE +
    `
local P, id, now = ARGV[1], ARGV[2], ARGV[3]
local k = P..'ev:'..id
local route = redis.call('HGET', k, 'route')
if not route or redis.call('HGET', k, 'state') == 'delivered' then return 0 end
redis.call('ZREM', P..'lease:'..route, id)
redis.call('ZREM', P..'due:'..route, id)
redis.call('ZREM', P..'dead', id)
redis.call('SREM', P..'open:'..route, id)
promote(P, route, redis.call('HGET', k, 'orderKey'), id, now)
redis.call('HSET', k, 'state', 'delivered', 'deliveredAt', now, 'owner', '', 'deadAt', '', 'orderKey', '', 'lastError', '')
if ARGV[4] ~= '1' then redis.call('HSET', k, 'body', '') end
redis.call('EXPIRE', k, ${FINISHED_TTL_S})
return 1`,
  // ARGV: P id owner dueAt error uncount: back to the queue (a failed attempt, or a release)
  whRequeue:
    LEASED +
    `
redis.call('ZREM', P..'lease:'..route, id)
redis.call('ZADD', P..'due:'..route, ARGV[4], id)
redis.call('HSET', k, 'state', 'pending', 'nextAt', ARGV[4], 'owner', '')
if ARGV[5] ~= '' then redis.call('HSET', k, 'lastError', ARGV[5]) end
if ARGV[6] == '1' and tonumber(redis.call('HGET', k, 'attempts')) > 0 then redis.call('HINCRBY', k, 'attempts', -1) end
return 1`,
  // ARGV: P id owner now error keep
  whDead:
    PROMOTE +
    LEASED +
    `
local now = ARGV[4]
redis.call('ZREM', P..'lease:'..route, id)
redis.call('SREM', P..'open:'..route, id)
promote(P, route, redis.call('HGET', k, 'orderKey'), id, now)
if ARGV[6] == '1' then
  redis.call('HSET', k, 'state', 'dead', 'deadAt', now, 'lastError', ARGV[5], 'owner', '', 'orderKey', '')
  redis.call('ZADD', P..'dead', now, id)
else
  redis.call('DEL', k)
end
return 1`,
  // ARGV: P id now
  whReplay: `
local P, id, now = ARGV[1], ARGV[2], ARGV[3]
if not redis.call('ZSCORE', P..'dead', id) then return {} end
local k = P..'ev:'..id
if redis.call('HGET', k, 'state') == 'dead' then
  local route = redis.call('HGET', k, 'route')
  redis.call('HSET', k, 'state', 'pending', 'attempts', 0, 'nextAt', now, 'orderKey', '')
  redis.call('ZADD', P..'due:'..route, now, id)
  redis.call('SADD', P..'open:'..route, id)
end
return redis.call('HGETALL', k)`,
} as const;

type Arg = string | number | Buffer;
type Scripts = { [K in keyof typeof SCRIPTS]: (...args: Arg[]) => Promise<number> } & {
  [K in keyof typeof SCRIPTS as `${K}Buffer`]: (...args: Arg[]) => Promise<Buffer[] | Buffer[][]>;
};

const defined = new WeakSet<Redis>();

export function createRedisWebhookStore(client: Redis): WebhookStore {
  if (!defined.has(client)) {
    for (const [name, lua] of Object.entries(SCRIPTS)) client.defineCommand(name, { numberOfKeys: 0, lua });
    defined.add(client);
  }
  const r = client as unknown as Redis & Scripts;
  // ioredis prefixes the keys of ordinary commands; the scripts build theirs, so they get it whole.
  const K = 'webhook:';
  const P = (client.options.keyPrefix ?? '') + K;

  const hgetall = async (ids: readonly string[]): Promise<StoredEvent[]> => {
    if (ids.length === 0) return [];
    const pipe = client.pipeline();
    for (const id of ids) pipe.hgetallBuffer(K + 'ev:' + id);
    const results = (await pipe.exec()) ?? [];
    const out: StoredEvent[] = [];
    for (const [err, value] of results) {
      if (err) throw err;
      const hash = value as Record<string, Buffer>;
      if (hash.id !== undefined) out.push(fromHash(hash));
    }
    return out;
  };

  return {
    durable: true,
    async accept(ev: IncomingEvent, ttlMs, nowMs) {
      const stored = await r.whAccept(
        P, ev.route, ev.eventId, ev.id, Math.max(1, Math.round(ttlMs)), nowMs, ev.orderKey ?? '', ev.provider, ev.receivedAt,
        ev.method, ev.path, JSON.stringify(ev.headers), ev.body, ev.requestId, ev.trace ?? '',
      );
      return stored === 1 ? 'stored' : 'duplicate';
    },
    async claim(route, owner, nowMs, leaseUntil, limit) {
      const rows = (await r.whClaimBuffer(P, route, nowMs, leaseUntil, limit, owner)) as Buffer[][];
      return rows.map((flat) => fromHash(pairs(flat)));
    },
    async delivered(id, nowMs, keepBody) {
      await r.whDelivered(P, id, nowMs, keepBody ? '1' : '0');
    },
    async retry(id, owner, nextAt, error) {
      await r.whRequeue(P, id, owner, nextAt, error, '0');
    },
    async dead(id, owner, nowMs, error, keep) {
      await r.whDead(P, id, owner, nowMs, error, keep ? '1' : '0');
    },
    async release(id, owner, nowMs) {
      await r.whRequeue(P, id, owner, nowMs, '', '1');
    },
    async nextDueAt(route) {
      const [due, lease] = await Promise.all([
        client.zrange(K + 'due:' + route, 0, 0, 'WITHSCORES'),
        client.zrange(K + 'lease:' + route, 0, 0, 'WITHSCORES'),
      ]);
      const times = [due[1], lease[1]].filter((t) => t !== undefined).map(Number);
      return times.length === 0 ? undefined : Math.min(...times);
    },
    pending: (route) => client.scard(K + 'open:' + route),
    async listDead() {
      return hgetall(await client.zrange(K + 'dead', 0, 999));
    },
    async replay(id, nowMs) {
      const flat = (await r.whReplayBuffer(P, id, nowMs)) as Buffer[];
      return flat.length === 0 ? undefined : fromHash(pairs(flat));
    },
    async recent(route, limit) {
      return hgetall(await client.lrange(K + 'recent:' + route, 0, limit - 1));
    },
    async maintain() {
      // every key carries its own expiry
    },
  };
}

function pairs(flat: readonly Buffer[]): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!.toString()] = flat[i + 1]!;
  return out;
}

function fromHash(h: Record<string, Buffer>): StoredEvent {
  const s = (k: string) => h[k]?.toString() ?? '';
  const n = (k: string) => (s(k) === '' ? undefined : Number(s(k)));
  return {
    id: s('id'),
    route: s('route'),
    provider: s('provider'),
    eventId: s('eventId'),
    receivedAt: n('receivedAt') ?? 0,
    method: s('method'),
    path: s('path'),
    headers: JSON.parse(s('headers') || '[]') as string[],
    body: h.body ?? Buffer.alloc(0),
    orderKey: s('orderKey') || undefined,
    requestId: s('requestId'),
    trace: s('trace') || undefined,
    state: s('state') as EventState,
    attempts: n('attempts') ?? 0,
    nextAt: n('nextAt') ?? 0,
    lastError: s('lastError') || undefined,
    deadAt: n('deadAt'),
    deliveredAt: n('deliveredAt'),
  };
}
