import type { Redis } from 'ioredis';
import { RECENT_KEPT, type DeliveryRef, type DeliveryState, type DeliveryStore, type NewDelivery, type NewMessage, type StoredDelivery } from './store.js';

/*
 * The shared store: every replica of gatehouse uses the same Redis, so a duplicate that reaches
 * another replica is still refused (SET NX on the de-duplication key, in the same script that
 * stores the message) and a delivery is leased to one replica at a time (a sorted set of lease
 * expiries; a replica that dies loses its leases when they expire). Each step is one Lua script:
 * atomic. A script's reply comes after Redis applied it (and wrote it to its AOF, with the
 * fsync policy Redis is configured for: `appendfsync always` for fsync before the 202).
 *
 * Keys, under the store's keyPrefix + `delivery:`:
 *   m:<id>                        the message (hash), with `open` and `dead` delivery counts
 *   d:<id>:<dest>                 one delivery (hash)
 *   dedupe:<route>:<key>          the de-duplication claim, expires after its ttl
 *   due:<route>:<dest>            zset id -> when due;  lease:<route>:<dest>  zset id -> lease expiry
 *   open:<route>:<dest>           set of ids not yet finished (the pending gauge)
 *   order:<route>:<dest>:<key>    list: deliveries of one ordering key, head = the one that may go
 *   msgs:<kind>                   zset id -> acceptance order, for the admin lists
 *   dead:<kind>                   zset "<id> <dest>" -> when it died
 * A finished message (no delivery open or dead) expires after a day.
 */

const FINISHED_TTL_S = 86_400;
/** Messages kept in an admin list (msgs:<kind>); older ones are still delivered, just not listed. */
const LISTED = RECENT_KEPT * 100;

const LIB = `
local function promote(P, route, dest, okey, id, now)
  if not okey or okey == '' then return end
  local o = P..'order:'..route..':'..dest..':'..okey
  redis.call('LREM', o, 1, id)
  local nxt = redis.call('LINDEX', o, 0)
  if nxt then
    local k = P..'d:'..nxt..':'..dest
    if redis.call('HGET', k, 'state') == 'waiting' then
      redis.call('HSET', k, 'state', 'pending', 'nextAt', now)
      redis.call('ZADD', P..'due:'..route..':'..dest, now, nxt)
    end
  end
end
local function add(P, id, route, list, now)
  local m = P..'m:'..id
  for _, d in ipairs(list) do
    local dest, okey = d.destination, d.orderKey or ''
    local state = 'pending'
    if okey ~= '' and redis.call('RPUSH', P..'order:'..route..':'..dest..':'..okey, id) > 1 then state = 'waiting' end
    redis.call('HSET', P..'d:'..id..':'..dest, 'destination', dest, 'state', state, 'attempts', d.attempts or '0', 'nextAt', now,
      'orderKey', okey, 'expiresAt', d.expiresAt or '', 'payload', d.payload or '', 'hasPayload', d.payload and '1' or '',
      'lastError', d.lastError or '', 'lastStatus', d.lastStatus or '', 'owner', '', 'deadAt', '', 'deliveredAt', '')
    if state == 'pending' then redis.call('ZADD', P..'due:'..route..':'..dest, now, id) end
    redis.call('SADD', P..'open:'..route..':'..dest, id)
    redis.call('HINCRBY', m, 'open', 1)
    redis.call('HSET', m, 'dests', (redis.call('HGET', m, 'dests') or '')..dest..',')
  end
end
local function leave(P, id, route, dest, now)
  local k = P..'d:'..id..':'..dest
  redis.call('ZREM', P..'lease:'..route..':'..dest, id)
  redis.call('ZREM', P..'due:'..route..':'..dest, id)
  redis.call('SREM', P..'open:'..route..':'..dest, id)
  promote(P, route, dest, redis.call('HGET', k, 'orderKey'), id, now)
  redis.call('HINCRBY', P..'m:'..id, 'open', -1)
end
local function settle(P, id, keepBody)
  local m = P..'m:'..id
  if tonumber(redis.call('HGET', m, 'open') or '0') > 0 or tonumber(redis.call('HGET', m, 'dead') or '0') > 0 then return end
  if keepBody ~= '1' then redis.call('HSET', m, 'body', '') end
  redis.call('EXPIRE', m, ${FINISHED_TTL_S})
  for dest in string.gmatch(redis.call('HGET', m, 'dests') or '', '([^,]+)') do redis.call('EXPIRE', P..'d:'..id..':'..dest, ${FINISHED_TTL_S}) end
end
local function both(P, id, dest)
  local out = redis.call('HGETALL', P..'m:'..id)
  for _, v in ipairs(redis.call('HGETALL', P..'d:'..id..':'..dest)) do out[#out + 1] = v end
  return out
end
`;

/** Stops a script unless ARGV[4] still holds the lease on delivery ARGV[2]/ARGV[3]: a late outcome is ignored. */
const LEASED = `
local P, id, dest = ARGV[1], ARGV[2], ARGV[3]
local k = P..'d:'..id..':'..dest
if redis.call('HGET', k, 'state') ~= 'delivering' or redis.call('HGET', k, 'owner') ~= ARGV[4] then return 0 end
local route = redis.call('HGET', P..'m:'..id, 'route')
`;

const SCRIPTS = {
  // ARGV: P id route kind now dedupeKey ttlMs deliveriesJson createdAt method path headers body requestId trace provider eventId idempotencyKey
  dlAccept:
    LIB +
    `
local P, id, route, kind, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if ARGV[6] ~= '' and not redis.call('SET', P..'dedupe:'..route..':'..ARGV[6], id, 'NX', 'PX', ARGV[7]) then return 0 end
local seq = redis.call('INCR', P..'seq')
redis.call('HSET', P..'m:'..id, 'id', id, 'route', route, 'kind', kind, 'createdAt', ARGV[9], 'method', ARGV[10], 'path', ARGV[11],
  'headers', ARGV[12], 'body', ARGV[13], 'requestId', ARGV[14], 'trace', ARGV[15], 'provider', ARGV[16], 'eventId', ARGV[17],
  'idempotencyKey', ARGV[18], 'open', 0, 'dead', 0, 'dests', '')
add(P, id, route, cjson.decode(ARGV[8]), now)
redis.call('ZADD', P..'msgs:'..kind, seq, id)
settle(P, id, '1') -- a message no destination wants expires as a finished one
return 1`,
  // ARGV: P route dest now leaseUntil limit owner
  dlClaim:
    LIB +
    `
local P, route, dest, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local due, lease = P..'due:'..route..':'..dest, P..'lease:'..route..':'..dest
for _, id in ipairs(redis.call('ZRANGEBYSCORE', lease, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', lease, id)
  redis.call('ZADD', due, now, id)
  redis.call('HSET', P..'d:'..id..':'..dest, 'state', 'pending', 'owner', '', 'nextAt', now)
end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))) do
  redis.call('ZREM', due, id)
  local k = P..'d:'..id..':'..dest
  if redis.call('EXISTS', k) == 1 and redis.call('EXISTS', P..'m:'..id) == 1 then
    redis.call('ZADD', lease, ARGV[5], id)
    redis.call('HSET', k, 'state', 'delivering', 'owner', ARGV[7])
    redis.call('HINCRBY', k, 'attempts', 1)
    out[#out + 1] = both(P, id, dest)
  end
end
return out`,
  // ARGV: P id dest owner now status keepBody thenJson
  dlDelivered:
    LIB +
    LEASED +
    `
local now = ARGV[5]
leave(P, id, route, dest, now)
redis.call('ZREM', P..'dead:'..redis.call('HGET', P..'m:'..id, 'kind'), id..' '..dest)
redis.call('HSET', k, 'state', 'delivered', 'deliveredAt', now, 'owner', '', 'deadAt', '', 'orderKey', '', 'lastError', '', 'lastStatus', ARGV[6])
add(P, id, route, cjson.decode(ARGV[8]), now)
settle(P, id, ARGV[7])
return 1`,
  // ARGV: P id dest owner dueAt error status uncount: back to the queue (a failed attempt, or a release)
  dlRequeue:
    LEASED +
    `
redis.call('ZREM', P..'lease:'..route..':'..dest, id)
redis.call('ZADD', P..'due:'..route..':'..dest, ARGV[5], id)
redis.call('HSET', k, 'state', 'pending', 'nextAt', ARGV[5], 'owner', '')
if ARGV[6] ~= '' then redis.call('HSET', k, 'lastError', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', k, 'lastStatus', ARGV[7]) end
if ARGV[8] == '1' and tonumber(redis.call('HGET', k, 'attempts')) > 0 then redis.call('HINCRBY', k, 'attempts', -1) end
return 1`,
  // ARGV: P id dest owner now error status keep thenJson
  dlDead:
    LIB +
    LEASED +
    `
local now = ARGV[5]
local kind = redis.call('HGET', P..'m:'..id, 'kind')
leave(P, id, route, dest, now)
if ARGV[8] == '1' then
  redis.call('HSET', k, 'state', 'dead', 'deadAt', now, 'lastError', ARGV[6], 'owner', '', 'orderKey', '')
  if ARGV[7] ~= '' then redis.call('HSET', k, 'lastStatus', ARGV[7]) end
  redis.call('HINCRBY', P..'m:'..id, 'dead', 1)
  redis.call('ZADD', P..'dead:'..kind, now, id..' '..dest)
else
  redis.call('DEL', k)
end
add(P, id, route, cjson.decode(ARGV[9]), now)
if ARGV[8] ~= '1' and tonumber(redis.call('HGET', P..'m:'..id, 'open') or '0') == 0 and tonumber(redis.call('HGET', P..'m:'..id, 'dead') or '0') == 0 then
  redis.call('DEL', P..'m:'..id)
  redis.call('ZREM', P..'msgs:'..kind, id)
end
return 1`,
  // ARGV: P id dest now alsoDelivered
  dlReplay:
    LIB +
    `
local P, id, dest, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k, m = P..'d:'..id..':'..dest, P..'m:'..id
local was = redis.call('HGET', k, 'state')
if was ~= 'dead' and not (was == 'delivered' and ARGV[5] == '1') then return {} end
local route, kind = redis.call('HGET', m, 'route'), redis.call('HGET', m, 'kind')
local expires = redis.call('HGET', k, 'expiresAt')
if expires and expires ~= '' then expires = tostring(tonumber(now) + tonumber(expires) - tonumber(redis.call('HGET', m, 'createdAt'))) end
-- still on the dead list (deadAt kept) until it is delivered
redis.call('HSET', k, 'state', 'pending', 'attempts', 0, 'nextAt', now, 'orderKey', '', 'expiresAt', expires or '')
redis.call('ZADD', P..'due:'..route..':'..dest, now, id)
redis.call('SADD', P..'open:'..route..':'..dest, id)
if was == 'dead' then redis.call('HINCRBY', m, 'dead', -1) end
redis.call('HINCRBY', m, 'open', 1)
redis.call('PERSIST', m)
redis.call('PERSIST', k)
return both(P, id, dest)`,
  // ARGV: P id dest now
  dlCancel:
    LIB +
    `
local P, id, dest, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = P..'d:'..id..':'..dest
local state = redis.call('HGET', k, 'state')
if state ~= 'pending' and state ~= 'waiting' and state ~= 'delivering' then return {} end
local route = redis.call('HGET', P..'m:'..id, 'route')
leave(P, id, route, dest, now)
redis.call('ZREM', P..'dead:'..redis.call('HGET', P..'m:'..id, 'kind'), id..' '..dest)
redis.call('HSET', k, 'state', 'cancelled', 'owner', '', 'orderKey', '')
settle(P, id, '0')
return both(P, id, dest)`,
  // ARGV: P(new) O(old, 'webhook:') id — one webhook event stored before the shared engine
  dlMigrateWebhook: `
local P, O, id = ARGV[1], ARGV[2], ARGV[3]
local old = O..'ev:'..id
local h = redis.call('HGETALL', old)
if #h == 0 then return 0 end
local e = {}
for i = 1, #h, 2 do e[h[i]] = h[i + 1] end
if e.state == 'delivered' or not e.route then redis.call('DEL', old) return 0 end
local route, dest = e.route, 'upstream'
local state = e.state
if state == 'delivering' then state = 'pending' end
local dead = state == 'dead'
local m = P..'m:'..id
redis.call('HSET', m, 'id', id, 'route', route, 'kind', 'webhook', 'createdAt', e.receivedAt or '0', 'method', e.method or 'POST', 'path', e.path or '/',
  'headers', e.headers or '[]', 'body', e.body or '', 'requestId', e.requestId or '', 'trace', e.trace or '', 'provider', e.provider or '',
  'eventId', e.eventId or '', 'idempotencyKey', '', 'open', dead and 0 or 1, 'dead', dead and 1 or 0, 'dests', dest..',')
redis.call('HSET', P..'d:'..id..':'..dest, 'destination', dest, 'state', state, 'attempts', e.attempts or '0', 'nextAt', e.nextAt or '0',
  'orderKey', e.orderKey or '', 'expiresAt', '', 'payload', '', 'hasPayload', '', 'lastError', e.lastError or '', 'lastStatus', '',
  'owner', '', 'deadAt', e.deadAt or '', 'deliveredAt', '')
redis.call('ZADD', P..'msgs:webhook', redis.call('INCR', P..'seq'), id)
if e.deadAt and e.deadAt ~= '' then redis.call('ZADD', P..'dead:webhook', e.deadAt, id..' '..dest) end
if not dead then
  if state == 'pending' then redis.call('ZADD', P..'due:'..route..':'..dest, e.nextAt or '0', id) end
  redis.call('SADD', P..'open:'..route..':'..dest, id)
end
redis.call('DEL', old)
return 1`,
} as const;

type Arg = string | number | Buffer;
type Scripts = { [K in keyof typeof SCRIPTS]: (...args: Arg[]) => Promise<number> } & {
  [K in keyof typeof SCRIPTS as `${K}Buffer`]: (...args: Arg[]) => Promise<Buffer[] | Buffer[][]>;
};

const defined = new WeakSet<Redis>();

/** Deliveries as the scripts take them: JSON, numbers as text (Lua would print large ones as floats). */
function deliveriesJson(list: readonly NewDelivery[] | undefined): string {
  return JSON.stringify(
    (list ?? []).map((d) => ({
      destination: d.destination,
      orderKey: d.orderKey,
      expiresAt: d.expiresAt === undefined ? undefined : String(d.expiresAt),
      // callbacks' JSON: text
      payload: d.payload?.toString('utf8'),
      attempts: d.attempts === undefined ? undefined : String(d.attempts),
      lastError: d.lastError,
      lastStatus: d.lastStatus === undefined ? undefined : String(d.lastStatus),
    })),
  );
}

export function createRedisDeliveryStore(client: Redis): DeliveryStore {
  if (!defined.has(client)) {
    for (const [name, lua] of Object.entries(SCRIPTS)) client.defineCommand(name, { numberOfKeys: 0, lua });
    defined.add(client);
  }
  const r = client as unknown as Redis & Scripts;
  // ioredis prefixes the keys of ordinary commands; the scripts build theirs, so they get it whole.
  const K = 'delivery:';
  const P = (client.options.keyPrefix ?? '') + K;

  /** Message and delivery hashes of (id, dest) pairs, skipping what expired meanwhile. */
  const fetch = async (refs: readonly DeliveryRef[]): Promise<StoredDelivery[]> => {
    if (refs.length === 0) return [];
    const pipe = client.pipeline();
    for (const ref of refs) pipe.hgetallBuffer(K + 'm:' + ref.id).hgetallBuffer(K + 'd:' + ref.id + ':' + ref.destination);
    const results = (await pipe.exec()) ?? [];
    const out: StoredDelivery[] = [];
    for (let i = 0; i + 1 < results.length; i += 2) {
      const [e1, m] = results[i]!;
      const [e2, d] = results[i + 1]!;
      const err = e1 ?? e2;
      if (err) throw err;
      const hash = { ...(m as Record<string, Buffer>), ...(d as Record<string, Buffer>) };
      if (hash.id !== undefined && hash.state !== undefined) out.push(fromHash(hash));
    }
    return out;
  };
  let migrateUntil = 0;
  /** Every (id, destination) of the messages, in their order. */
  const allRefs = async (ids: readonly string[]): Promise<DeliveryRef[]> => {
    const pipe = client.pipeline();
    for (const id of ids) pipe.hget(K + 'm:' + id, 'dests');
    const results = (await pipe.exec()) ?? [];
    return ids.flatMap((id, i) => ((results[i]?.[1] as string | null) ?? '').split(',').filter((d) => d !== '').map((destination) => ({ id, destination })));
  };
  const one = (flat: Buffer[]) => (flat.length === 0 ? undefined : fromHash(pairs(flat)));

  return {
    durable: true,
    async accept(msg: NewMessage, deliveries, nowMs, dedupe) {
      const stored = await r.dlAccept(
        P, msg.id, msg.route, msg.kind, nowMs, dedupe?.key ?? '', Math.max(1, Math.round(dedupe?.ttlMs ?? 1)), deliveriesJson(deliveries),
        msg.createdAt, msg.method, msg.path, JSON.stringify(msg.headers), msg.body, msg.requestId, msg.trace ?? '', msg.provider ?? '',
        msg.eventId ?? '', msg.idempotencyKey ?? '',
      );
      return stored === 1 ? 'stored' : 'duplicate';
    },
    async claim(route, destination, owner, nowMs, leaseUntil, limit) {
      const rows = (await r.dlClaimBuffer(P, route, destination, nowMs, leaseUntil, limit, owner)) as Buffer[][];
      return rows.map((flat) => fromHash(pairs(flat)));
    },
    async delivered(ref, owner, nowMs, status, keepBody, then) {
      await r.dlDelivered(P, ref.id, ref.destination, owner, nowMs, status, keepBody ? '1' : '0', deliveriesJson(then));
    },
    async retry(ref, owner, nextAt, error, status) {
      await r.dlRequeue(P, ref.id, ref.destination, owner, nextAt, error, status === undefined ? '' : String(status), '0');
    },
    async dead(ref, owner, nowMs, error, status, keep, then) {
      await r.dlDead(P, ref.id, ref.destination, owner, nowMs, error, status === undefined ? '' : String(status), keep ? '1' : '0', deliveriesJson(then));
    },
    async release(ref, owner, nowMs) {
      await r.dlRequeue(P, ref.id, ref.destination, owner, nowMs, '', '', '1');
    },
    async nextDueAt(route, destination) {
      const [due, lease] = await Promise.all([
        client.zrange(`${K}due:${route}:${destination}`, 0, 0, 'WITHSCORES'),
        client.zrange(`${K}lease:${route}:${destination}`, 0, 0, 'WITHSCORES'),
      ]);
      const times = [due[1], lease[1]].filter((t) => t !== undefined).map(Number);
      return times.length === 0 ? undefined : Math.min(...times);
    },
    pending: (route, destination) => client.scard(`${K}open:${route}:${destination}`),
    busy: async (route, destination, orderKey) => (await client.llen(`${K}order:${route}:${destination}:${orderKey}`)) > 0,
    async deadCount(route, destination) {
      // dead deliveries are few (they wait for an operator): counted from the dead list
      const kinds = await Promise.all(['webhook', 'outbox'].map((kind) => client.zrange(`${K}dead:${kind}`, 0, -1)));
      const refs = kinds.flat().map(parseRef).filter((ref) => ref.destination === destination);
      return (await fetch(refs)).filter((d) => d.route === route && d.state === 'dead').length;
    },
    async listDead(kind) {
      return fetch((await client.zrange(`${K}dead:${kind}`, 0, 999)).map(parseRef));
    },
    async replay(ref, nowMs, from = ['dead']) {
      return one((await r.dlReplayBuffer(P, ref.id, ref.destination, nowMs, from.includes('delivered') ? '1' : '0')) as Buffer[]);
    },
    async cancel(ref, nowMs) {
      return one((await r.dlCancelBuffer(P, ref.id, ref.destination, nowMs)) as Buffer[]);
    },
    async get(id) {
      const dests = (await client.hget(K + 'm:' + id, 'dests')) ?? '';
      return fetch(dests.split(',').filter((d) => d !== '').map((destination) => ({ id, destination })));
    },
    async list(query) {
      const out: StoredDelivery[] = [];
      // newest first, a page at a time, until the limit is filled or the list ends
      for (let start = 0; out.length < query.limit && start < LISTED; start += 500) {
        const ids = await client.zrevrange(`${K}msgs:${query.kind}`, start, start + 499);
        if (ids.length === 0) break;
        const refs = query.destination !== undefined ? ids.map((id) => ({ id, destination: query.destination! })) : await allRefs(ids);
        for (const d of await fetch(refs)) {
          if (query.route !== undefined && d.route !== query.route) continue;
          if (query.states !== undefined && !query.states.includes(d.state)) continue;
          if ((query.from !== undefined && d.createdAt < query.from) || (query.to !== undefined && d.createdAt >= query.to)) continue;
          if (out.length < query.limit) out.push(d);
        }
      }
      return out;
    },
    async maintain(nowMs) {
      // webhook events an earlier version (or an old replica during a rolling update) stored
      if (migrateUntil === 0) migrateUntil = nowMs + MIGRATE_FOR_MS;
      if (nowMs < migrateUntil) await migrateWebhookEvents(client, r, P);
      // finished messages carry their own expiry; the admin lists are trimmed to the newest
      for (const kind of ['webhook', 'outbox']) await client.zremrangebyrank(`${K}msgs:${kind}`, 0, -LISTED - 1);
    },
  };
}

/** How long after its start a process looks for webhook events under the old keys (a rolling update's old replicas). */
const MIGRATE_FOR_MS = 15 * 60_000;

/**
 * Moves webhook events stored by gatehouse before the shared engine (keys `webhook:...`) into the
 * engine's keys: their ordering lists and id claims (renamed, so their expiry stays), then each
 * event not yet delivered (one script per event: atomic, and a no-op when another replica moved
 * it first), then the old queues.
 */
async function migrateWebhookEvents(client: Redis, r: Redis & Scripts, P: string): Promise<void> {
  const prefix = client.options.keyPrefix ?? '';
  const O = 'webhook:';
  const scan = async (what: string): Promise<string[]> => {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}${O}${what}*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) out.push(k.slice(prefix.length)); // ordinary commands add the prefix again
    } while (cursor !== '0');
    return out;
  };
  const events = await scan('ev:');
  if (events.length === 0) return;
  for (const key of await scan('order:')) {
    const rest = key.slice(`${O}order:`.length);
    const colon = rest.indexOf(':'); // route names have no ':'; ordering keys may
    await client.rename(key, `delivery:order:${rest.slice(0, colon)}:upstream:${rest.slice(colon + 1)}`);
  }
  for (const key of await scan('dedupe:')) await client.rename(key, `delivery:dedupe:${key.slice(`${O}dedupe:`.length)}`);
  for (const key of events) await r.dlMigrateWebhook(P, prefix + O, key.slice(`${O}ev:`.length));
  const queues = [...(await scan('due:')), ...(await scan('lease:')), ...(await scan('open:')), ...(await scan('recent:')), ...(await scan('dead'))];
  if (queues.length > 0) await client.del(...queues);
}

function parseRef(member: string): DeliveryRef {
  const space = member.indexOf(' ');
  return { id: member.slice(0, space), destination: member.slice(space + 1) };
}

function pairs(flat: readonly Buffer[]): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!.toString()] = flat[i + 1]!;
  return out;
}

function fromHash(h: Record<string, Buffer>): StoredDelivery {
  const s = (k: string) => h[k]?.toString() ?? '';
  const n = (k: string) => (s(k) === '' ? undefined : Number(s(k)));
  const opt = (k: string) => s(k) || undefined;
  return {
    id: s('id'),
    route: s('route'),
    kind: s('kind') as 'webhook' | 'outbox',
    createdAt: n('createdAt') ?? 0,
    method: s('method'),
    path: s('path'),
    headers: JSON.parse(s('headers') || '[]') as string[],
    body: h.body ?? Buffer.alloc(0),
    requestId: s('requestId'),
    trace: opt('trace'),
    provider: opt('provider'),
    eventId: opt('eventId'),
    idempotencyKey: opt('idempotencyKey'),
    destination: s('destination'),
    state: s('state') as DeliveryState,
    attempts: n('attempts') ?? 0,
    nextAt: n('nextAt') ?? 0,
    orderKey: opt('orderKey'),
    expiresAt: n('expiresAt'),
    payload: s('hasPayload') === '1' ? h.payload : undefined,
    lastError: opt('lastError'),
    lastStatus: n('lastStatus'),
    deadAt: n('deadAt'),
    deliveredAt: n('deliveredAt'),
  };
}
