import { isIP } from 'node:net';
import { z } from 'zod';
import { Secret } from './secret.js';
import { parseDuration, parseSize } from './units.js';

/*
 * The one definition of the config file's shape. `Config` is inferred from it; every key is
 * spelled as in the YAML, so `routes[2].retry.attempts` in an error message is also the code path.
 * Durations become milliseconds and sizes bytes in transforms. Objects are strict: a mistyped key
 * is an error, never a silently disabled policy.
 */

// ---------------------------------------------------------------- building blocks

export const duration = z.string({ error: 'must be a duration such as 250ms, 2s, 1m or 1h' }).transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `must be a duration such as 250ms, 2s, 1m or 1h (got ${JSON.stringify(text)})` });
    return z.NEVER;
  }
  return ms;
});

export const size = z.string({ error: 'must be a size such as 512b, 64kb or 10mb' }).transform((text, ctx) => {
  const bytes = parseSize(text);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: `must be a size such as 512b, 64kb or 10mb (got ${JSON.stringify(text)})` });
    return z.NEVER;
  }
  return bytes;
});

/** A secret-bearing value: wrapped at load time so nothing can print it by accident. */
export const secret = z.string({ error: 'must be a string' }).min(1, 'must not be empty').transform((s) => new Secret(s));

export const name = z
  .string({ error: 'must be a string' })
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must start with a letter or digit and use only letters, digits, _ . -');

export const positiveInt = z.int({ error: 'must be an integer >= 1' }).min(1, 'must be an integer >= 1');

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT'] as const;
export const method = z
  .string({ error: 'must be an HTTP method' })
  .transform((m) => m.toUpperCase())
  .pipe(z.enum(METHODS, { error: `must be one of ${METHODS.join(', ')}` }));

/** `host:port`, `[v6]:port`; port 0 asks the OS for a free one. */
export const address = z.string({ error: 'must be host:port' }).transform((text, ctx) => {
  const parsed = parseAddress(text);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: `must be host:port, e.g. 127.0.0.1:8080 (got ${JSON.stringify(text)})` });
    return z.NEVER;
  }
  return parsed;
});

export interface Address {
  readonly host: string;
  readonly port: number;
  readonly text: string;
}

export function parseAddress(text: string): Address | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const host = m[1] ?? (m[2] || '0.0.0.0');
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  if (m[1] !== undefined && isIP(m[1]) !== 6) return undefined;
  return { host, port, text };
}

/** An IP address or CIDR block, for `trustedProxies`. */
const cidr = z.string({ error: 'must be an IP address or CIDR block' }).refine((text) => {
  const [ip, prefix, ...rest] = text.split('/');
  const family = isIP(ip ?? '');
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  const bits = Number(prefix);
  return /^\d+$/.test(prefix) && bits >= 0 && bits <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR block such as 10.0.0.0/8');

const endpoint = z.string({ error: 'must be an http:// or https:// URL' }).transform((text, ctx) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash || url.username) {
    ctx.addIssue({ code: 'custom', message: `must be an http:// or https:// URL without query or credentials (got ${JSON.stringify(text)})` });
    return z.NEVER;
  }
  return url;
});

/**
 * A key of a capability this build does not implement. Rejected with a clear message rather
 * than accepted and ignored, so a config never believes a policy is on when it is not.
 */
export const notBuilt = (what: string) =>
  z.unknown().superRefine((_value, ctx) => {
    ctx.addIssue({ code: 'custom', message: `${what} is not supported by this build of gatehouse` });
  });

const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a valid HTTP header name');

const headerRules = z.strictObject({
  set: z.record(headerName, z.string({ error: 'must be a string' })).default({}),
  remove: z.array(headerName).default([]),
});

// ---------------------------------------------------------------- sections

const Listener = z.strictObject({
  name,
  address,
  tls: notBuilt('listeners[].tls (HTTPS listeners)').optional(),
  trustedProxies: z.array(cidr).default([]),
});

/**
 * Where quotas and webhooks keep state. `memory`: this process only; `sqlite`: embedded and
 * durable, in `<dataDir>/gatehouse.db` unless `path` says otherwise; `redis`: shared by replicas.
 */
const Store = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('memory') }),
    z.strictObject({ type: z.literal('sqlite'), path: z.string().min(1).optional() }),
    z.strictObject({
      type: z.literal('redis'),
      url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
      keyPrefix: z.string().default('gatehouse:'),
      connectTimeout: duration.prefault('500ms'),
      commandTimeout: duration.prefault('100ms'),
    }),
  ],
  { error: 'type must be one of "memory", "sqlite", "redis"' },
);

const Admin = z.strictObject({
  address: address.prefault('127.0.0.1:9901'),
  token: secret.optional(),
});

const Telemetry = z.strictObject({
  serviceName: z.string().min(1).optional(),
  traces: z
    .strictObject({
      endpoint: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
      sampleRatio: z.number().min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1').optional(),
      headers: z.record(headerName, secret).optional(),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      prometheus: z.boolean().default(true),
      otlp: z
        .strictObject({
          endpoint: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
          interval: duration.prefault('15s'),
        })
        .optional(),
    })
    .prefault({}),
  accessLog: z.enum(['stdout', 'off']).default('stdout'),
});

const Upstream = z.strictObject({
  endpoints: z.array(endpoint).min(1, 'must list at least one endpoint'),
  connectTimeout: duration.prefault('1s'),
  maxConnections: positiveInt.default(256),
  tls: notBuilt('upstreams.*.tls').optional(),
  credentials: notBuilt('upstreams.*.credentials').optional(),
  loadBalancing: notBuilt('upstreams.*.loadBalancing').optional(),
  circuitBreaker: notBuilt('upstreams.*.circuitBreaker').optional(),
  maxConcurrent: notBuilt('upstreams.*.maxConcurrent').optional(),
  healthCheck: notBuilt('upstreams.*.healthCheck').optional(),
});

/**
 * What a quota counts by: one shared bucket (`global`), the client address (`ip`), a request
 * header's value (`header:<name>`) or a verified JWT claim (`jwt:<claim>`).
 */
const quotaKey = z
  .string({ error: 'must be global, ip, header:<name> or jwt:<claim>' })
  .refine(
    (k) => k === 'global' || k === 'ip' || /^header:[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || /^jwt:[^\s]+$/.test(k),
    'must be global, ip, header:<name> or jwt:<claim>',
  );

/**
 * One rate limit: a token bucket refilled at `limit` per `per`, holding at most `burst` tokens
 * (default: `limit`). `per` is a whole number of seconds: RateLimit-Policy announces it as `w=`.
 */
const Quota = z
  .strictObject({
    limit: positiveInt,
    per: duration.refine((ms) => ms >= 1000 && ms % 1000 === 0, 'must be a whole number of seconds such as 1s, 30s, 1m or 1h'),
    burst: positiveInt.optional(),
    key: quotaKey.default('global'),
    onExceed: z.enum(['reject', 'queue']).default('reject'),
    maxWait: duration.optional(),
    maxQueue: positiveInt.optional(),
    store: name.optional(),
  })
  .superRefine((q, ctx) => {
    if (q.onExceed !== 'queue') {
      for (const key of ['maxWait', 'maxQueue'] as const) {
        if (q[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'only applies with onExceed: queue' });
      }
    }
  });

const Match = z
  .strictObject({
    path: z.string().startsWith('/', 'must start with /').optional(),
    pathPrefix: z.string().startsWith('/', 'must start with /').optional(),
    pathRegex: z
      .string()
      .refine((re) => {
        try {
          new RegExp(re);
          return true;
        } catch {
          return false;
        }
      }, 'must be a valid regular expression')
      .optional(),
    methods: z.array(method).min(1).optional(),
    host: z
      .string()
      .regex(/^(\*\.)?[A-Za-z0-9.-]+$/, 'must be a host name, optionally starting with *.')
      .transform((h) => h.toLowerCase())
      .optional(),
    headers: z.record(headerName, z.string({ error: 'must be a string' })).optional(),
  })
  .superRefine((m, ctx) => {
    const kinds = [m.path, m.pathPrefix, m.pathRegex].filter((x) => x !== undefined).length;
    if (kinds > 1) ctx.addIssue({ code: 'custom', message: 'use only one of path, pathPrefix and pathRegex' });
  });

const Rewrite = z
  .strictObject({
    stripPrefix: z.string().startsWith('/', 'must start with /').optional(),
    prefix: z.string().startsWith('/', 'must start with /').optional(),
    host: z.string().min(1).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.stripPrefix !== undefined && r.prefix !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'use either stripPrefix or prefix, not both' });
    }
  });

const Route = z.strictObject({
  name,
  listener: z.string({ error: 'must name a listener' }),
  match: Match.prefault({}),
  upstream: z.string({ error: 'must name an upstream' }),
  rewrite: Rewrite.optional(),
  timeout: duration.prefault('30s'),
  maxBodySize: size.optional(),
  headers: z
    .strictObject({
      request: headerRules.prefault({}),
      response: headerRules.prefault({}),
    })
    .prefault({}),
  websocket: z.boolean().default(false),
  jwt: notBuilt('routes[].jwt').optional(),
  /** Quota names (from `quotas:`) or inline quotas; every one applies. */
  quota: z.array(z.union([name, Quota])).min(1, 'must list at least one quota').optional(),
  /** Order in which queued requests of shared quotas are released. */
  priority: z.enum(['high', 'normal', 'low']).default('normal'),
  retry: notBuilt('routes[].retry').optional(),
  idempotencyKey: notBuilt('routes[].idempotencyKey').optional(),
  webhook: notBuilt('routes[].webhook').optional(),
});

export const ConfigSchema = z
  .strictObject({
    version: z.literal(1, { error: 'must be 1' }),
    listeners: z.array(Listener).min(1, 'must define at least one listener'),
    admin: Admin.prefault({}),
    dataDir: z.string().min(1).default('./data'),
    stores: z.record(name, Store).default({}),
    telemetry: Telemetry.prefault({}),
    shutdown: z.strictObject({ drainTimeout: duration.prefault('20s') }).prefault({}),
    upstreams: z.record(name, Upstream).default({}),
    quotas: z.record(name, Quota).default({}),
    routes: z.array(Route).default([]),
  });

/**
 * References between sections (route -> listener, route -> upstream), names that must be unique.
 * Runs on the raw value, not inside the schema, so these problems are reported together with the
 * schema's own instead of only once the rest is valid.
 */
export function crossCheck(value: unknown): { path: PropertyKey[]; message: string }[] {
  const problems: { path: PropertyKey[]; message: string }[] = [];
  const root = asRecord(value);
  const listeners = new Set<string>();
  const addresses = new Map<string, number>();
  asArray(root.listeners).forEach((l, i) => {
    const { name: n, address: a } = asRecord(l);
    if (typeof n === 'string') {
      if (listeners.has(n)) problems.push({ path: ['listeners', i, 'name'], message: `duplicate listener name "${n}"` });
      listeners.add(n);
    }
    const parsed = typeof a === 'string' ? parseAddress(a) : undefined;
    if (parsed && parsed.port !== 0) {
      const key = `${parsed.host}:${parsed.port}`;
      const other = addresses.get(key);
      if (other !== undefined) problems.push({ path: ['listeners', i, 'address'], message: `address ${key} is already used by listeners[${other}]` });
      addresses.set(key, i);
    }
  });
  const upstreams = Object.keys(asRecord(root.upstreams));
  const quotas = asRecord(root.quotas);
  const stores = asRecord(root.stores);
  const routes = new Set<string>();
  asArray(root.routes).forEach((r, i) => {
    const route = asRecord(r);
    if (typeof route.name === 'string') {
      if (routes.has(route.name)) problems.push({ path: ['routes', i, 'name'], message: `duplicate route name "${route.name}"` });
      routes.add(route.name);
    }
    if (typeof route.listener === 'string' && !listeners.has(route.listener)) {
      problems.push({ path: ['routes', i, 'listener'], message: `unknown listener "${route.listener}" (defined: ${[...listeners].join(', ') || 'none'})` });
    }
    if (typeof route.upstream === 'string' && !upstreams.includes(route.upstream)) {
      problems.push({ path: ['routes', i, 'upstream'], message: `unknown upstream "${route.upstream}" (defined: ${upstreams.join(', ') || 'none'})` });
    }
    if (asRecord(route.rewrite).prefix !== undefined && asRecord(route.match).pathPrefix === undefined) {
      problems.push({ path: ['routes', i, 'rewrite', 'prefix'], message: 'needs match.pathPrefix: it replaces the matched prefix' });
    }
    checkRouteQuotas(route, i, quotas, problems);
  });
  for (const [q, def] of Object.entries(quotas)) checkQuotaStore(asRecord(def), ['quotas', q], stores, problems);
  asArray(root.routes).forEach((r, i) => {
    asArray(asRecord(r).quota).forEach((item, j) => {
      if (item !== null && typeof item === 'object') checkQuotaStore(asRecord(item), ['routes', i, 'quota', j], stores, problems);
    });
  });
  return problems;
}

/** Quota references of one route: names that exist, no quota twice, `jwt:` keys only behind `jwt`. */
function checkRouteQuotas(
  route: Record<string, unknown>,
  i: number,
  quotas: Record<string, unknown>,
  problems: { path: PropertyKey[]; message: string }[],
): void {
  const seen = new Set<string>();
  asArray(route.quota).forEach((item, j) => {
    const path = ['routes', i, 'quota', j];
    let def: Record<string, unknown>;
    if (typeof item === 'string') {
      if (!Object.hasOwn(quotas, item)) {
        problems.push({ path, message: `unknown quota "${item}" (defined: ${Object.keys(quotas).join(', ') || 'none'})` });
        return;
      }
      if (seen.has(item)) problems.push({ path, message: `quota "${item}" is listed twice` });
      seen.add(item);
      def = asRecord(quotas[item]);
    } else {
      def = asRecord(item);
      const inlineName = `${String(route.name)}-${j}`;
      if (Object.hasOwn(quotas, inlineName)) {
        problems.push({ path, message: `this inline quota is named "${inlineName}", which quotas.${inlineName} already uses` });
      }
    }
    if (typeof def.key === 'string' && def.key.startsWith('jwt:') && route.jwt === undefined) {
      const which = typeof item === 'string' ? `quota "${item}" counts` : 'counts';
      problems.push({ path: typeof item === 'string' ? path : [...path, 'key'], message: `${which} by ${def.key}, which needs jwt on this route` });
    }
  });
}

/** A quota's `store` must name a memory or redis store (sqlite is for webhooks). */
function checkQuotaStore(
  def: Record<string, unknown>,
  path: PropertyKey[],
  stores: Record<string, unknown>,
  problems: { path: PropertyKey[]; message: string }[],
): void {
  if (typeof def.store !== 'string') return;
  if (!Object.hasOwn(stores, def.store)) {
    problems.push({ path: [...path, 'store'], message: `unknown store "${def.store}" (defined: ${Object.keys(stores).join(', ') || 'none'})` });
    return;
  }
  const type = asRecord(stores[def.store]).type;
  if (type !== 'memory' && type !== 'redis') {
    problems.push({ path: [...path, 'store'], message: `store "${def.store}" is ${String(type)}: quotas use a memory or redis store` });
  }
}

const asRecord = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export type Config = z.output<typeof ConfigSchema>;
export type ListenerConfig = Config['listeners'][number];
export type UpstreamConfig = Config['upstreams'][string];
export type RouteConfig = Config['routes'][number];
export type TelemetryConfig = Config['telemetry'];
export type StoreConfig = Config['stores'][string];
export type QuotaConfig = Config['quotas'][string];
