import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { z } from 'zod';
import { linearRegexProblem } from '../routing/regex.js';
import { MAX_REFERENCED_BYTES, readBoundedFile } from './read.js';
import { Secret } from './secret.js';
import { parseDuration, parseSize } from './units.js';

/*
 * The one definition of the config file's shape. `Config` is inferred from it; every key is
 * spelled as in the YAML, so `routes[2].retry.attempts` in an error message is also the code path.
 * Durations become milliseconds and sizes bytes in transforms. Objects are strict: a mistyped key
 * is an error, never a silently disabled policy.
 */

// ---------------------------------------------------------------- building blocks

/**
 * Reports a value that does not parse. The loader appends `(got <value>)` to the message, or
 * `(got ***)` where the value is a secret (a secret key, or anything loaded by `${env:}` or
 * `${file:}`), so a message never has to quote the value itself.
 */
export function reject(ctx: z.RefinementCtx, message: string, input: unknown): typeof z.NEVER {
  ctx.addIssue({ code: 'custom', message, input, params: { got: true } });
  return z.NEVER;
}

export const duration = z.string({ error: 'must be a duration such as 250ms, 2s, 1m or 1h' }).transform((text, ctx) => {
  const ms = parseDuration(text);
  return ms ?? reject(ctx, 'must be a duration such as 250ms, 2s, 1m or 1h', text);
});

export const size = z.string({ error: 'must be a size such as 512b, 64kb or 10mb' }).transform((text, ctx) => {
  const bytes = parseSize(text);
  return bytes ?? reject(ctx, 'must be a size such as 512b, 64kb or 10mb', text);
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
  return parsed ?? reject(ctx, 'must be host:port, e.g. 127.0.0.1:8080', text);
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

/** `new URL()` without the throw (URL.parse needs Node 22). */
function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

const endpoint = z.string({ error: 'must be an http:// or https:// URL' }).transform((text, ctx) => {
  const url = parseUrl(text);
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash || url.username) {
    return reject(ctx, 'must be an http:// or https:// URL without query or credentials', text);
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

/**
 * A value gatehouse puts in a header, checked as Node and undici check it on every request: a CR,
 * LF, NUL or other control character (literal or from `${env:}`/`${file:}`) would otherwise
 * validate and then fail every request on the route. The message never quotes the value.
 */
const HEADER_VALUE_INVALID = /[^\t\x20-\x7e\x80-\xff]/;
const HEADER_VALUE_MESSAGE = 'must be a valid HTTP header value: no CR, LF, NUL or other control character, nothing beyond U+00FF';
const headerValue = z.string({ error: 'must be a string' }).refine((v) => !HEADER_VALUE_INVALID.test(v), HEADER_VALUE_MESSAGE);
/** A secret header value (an API key, a collector token): checked like any header value, then wrapped. */
const secretHeaderValue = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .refine((v) => !HEADER_VALUE_INVALID.test(v), HEADER_VALUE_MESSAGE)
  .transform((s) => new Secret(s));

const headerRules = z.strictObject({
  set: z.record(headerName, headerValue).default({}),
  remove: z.array(headerName).default([]),
});

// ---------------------------------------------------------------- security building blocks

/**
 * PEM material: inline (`-----BEGIN ...`, typically from `${file:}` or `${env:}`) or a file path
 * (relative to the working directory). Checked after parsing (`files.ts`) so `gatehouse validate`
 * reports an unreadable or unparsable file at its position; read again at runtime (rotation).
 * A path must name a regular file of at most 1 MB (SPEC §3.1).
 */
export function readPem(source: string): string {
  return source.trimStart().startsWith('-----BEGIN') ? source : readBoundedFile(source, MAX_REFERENCED_BYTES);
}

const pemCert = z.string({ error: 'must be a PEM file path or PEM text' }).min(1);
const pemKey = z
  .string({ error: 'must be a PEM file path or PEM text' })
  .min(1)
  .transform((s) => new Secret(s));
const tlsVersion = z.enum(['TLSv1.2', 'TLSv1.3'], { error: 'must be TLSv1.2 or TLSv1.3' });

/** http:// is accepted only on loopback: keys, tokens and client secrets must not travel in clear. */
const secureUrl = z.string({ error: 'must be an https:// URL' }).superRefine((text, ctx) => {
  const url = parseUrl(text);
  if (url === undefined || (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname)))) {
    reject(ctx, 'must be an https:// URL (http:// only on loopback)', text);
  }
});

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/** JWS algorithms for public keys. HMAC (HS*) and `none` are not accepted: no algorithm confusion. */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const ListenerTls = z
  .strictObject({
    cert: pemCert,
    key: pemKey,
    /** CA bundle that client certificates must chain to: mTLS, refused at the handshake without one. */
    clientCa: pemCert.optional(),
    minVersion: tlsVersion.default('TLSv1.2'),
    /** OpenSSL cipher list; default: Mozilla "intermediate" (TLS 1.3 suites, TLS 1.2 ECDHE with AEAD). */
    ciphers: z
      .string()
      .min(1)
      .refine((list) => {
        try {
          createSecureContext({ ciphers: list });
          return true;
        } catch {
          return false;
        }
      }, 'must be an OpenSSL cipher list that names at least one cipher this build of OpenSSL has')
      .optional(),
    /** Verified client-certificate facts sent upstream; client-sent copies are always removed. */
    forwardClientCert: z
      .strictObject({ subject: headerName.optional(), fingerprint: headerName.optional() })
      .optional(),
  })
  .superRefine((t, ctx) => {
    if (t.forwardClientCert !== undefined && t.clientCa === undefined) {
      ctx.addIssue({ code: 'custom', path: ['forwardClientCert'], message: 'needs clientCa: only verified client certificates are forwarded' });
    }
  });

/** Limits against slow or oversized requests (slowloris, header floods, handshake floods). */
const ListenerLimits = z.strictObject({
  maxHeaderSize: size.prefault('16kb'),
  maxHeaders: positiveInt.default(100),
  headersTimeout: duration.prefault('10s'),
  requestTimeout: duration.prefault('5m'),
  /** Longest a request body may go without a byte arriving (nginx's client_body_timeout): 408. */
  bodyTimeout: duration.prefault('30s'),
  /** Bodies up to this size are read whole before an upstream connection is taken. */
  bufferBodies: size.prefault('64kb'),
  /** TLS listeners: a handshake not finished by then closes the socket. */
  handshakeTimeout: duration.prefault('10s'),
  /** Open connections at most; more are refused at accept. */
  maxConnections: positiveInt.default(10_000),
  /** Forward header names that contain `_` (dropped by default, as nginx does). */
  allowUnderscoreHeaders: z.boolean().default(false),
});

const UpstreamTls = z
  .strictObject({
    ca: pemCert.optional(),
    cert: pemCert.optional(),
    key: pemKey.optional(),
    serverName: z.string().min(1).optional(),
    minVersion: tlsVersion.default('TLSv1.2'),
    insecureSkipVerify: z.boolean().default(false),
  })
  .superRefine((t, ctx) => {
    if ((t.cert === undefined) !== (t.key === undefined)) {
      ctx.addIssue({ code: 'custom', path: [t.cert === undefined ? 'cert' : 'key'], message: 'cert and key go together (client certificate for mTLS)' });
    }
  });

const OAuth2 = z.strictObject({
  tokenUrl: secureUrl,
  clientId: z.string().min(1),
  clientSecret: secret,
  scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be an OAuth2 scope token')).default([]),
  authMethod: z.enum(['basic', 'post']).default('basic'),
  audience: z.string().min(1).optional(),
  timeout: duration.prefault('10s'),
});

const Credentials = z
  .strictObject({
    header: z.strictObject({ name: headerName, value: secretHeaderValue }).optional(),
    oauth2: OAuth2.optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.header === undefined) === (c.oauth2 === undefined)) ctx.addIssue({ code: 'custom', message: 'set exactly one of header and oauth2' });
  });

const claimValue = z.union([z.string(), z.number(), z.boolean()], { error: 'must be a string, number or boolean' });

const Jwt = z
  .strictObject({
    issuer: z.string().min(1).optional(),
    audiences: z.array(z.string().min(1)).min(1).optional(),
    jwksUri: secureUrl.optional(),
    /** A local JWKS file, re-read on every reload. */
    jwks: z.string().min(1).optional(),
    algorithms: z
      .array(
        z
          .string({ error: 'must be a JWS algorithm name' })
          .refine((a) => (JWT_ALGORITHMS as readonly string[]).includes(a), {
            error: `must be one of ${JWT_ALGORITHMS.join(', ')}; HMAC and none are never accepted`,
            params: { got: true },
          }),
      )
      .min(1)
      .default(['RS256', 'ES256']),
    clockTolerance: duration.prefault('30s'),
    requiredScopes: z.array(z.string().min(1)).default([]),
    requiredClaims: z.record(z.string().min(1), claimValue).default({}),
    forwardClaims: z.record(z.string().min(1), headerName).default({}),
    /** Where the token is: `Authorization: Bearer` by default, or a named header or cookie. */
    from: z
      .strictObject({ header: headerName.optional(), cookie: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a cookie name').optional() })
      .superRefine((f, ctx) => {
        if ((f.header === undefined) === (f.cookie === undefined)) ctx.addIssue({ code: 'custom', message: 'set exactly one of header and cookie' });
      })
      .optional(),
    /** Verified tokens remembered until they expire (0 = verify every request). */
    cacheSize: z.int({ error: 'must be an integer >= 0' }).min(0, 'must be an integer >= 0').default(1000),
    /** Remote key set: re-fetched after maxAge, on an unknown kid at most once per cooldown. */
    jwksCache: z
      .strictObject({ maxAge: duration.prefault('10m'), cooldown: duration.prefault('30s'), timeout: duration.prefault('5s') })
      .prefault({}),
  })
  .superRefine((j, ctx) => {
    if (j.jwksUri !== undefined && j.jwks !== undefined) ctx.addIssue({ code: 'custom', path: ['jwks'], message: 'use either jwksUri or jwks, not both' });
    if (j.jwksUri === undefined && j.jwks === undefined && j.issuer === undefined) {
      ctx.addIssue({ code: 'custom', message: 'needs jwksUri, jwks, or issuer (keys found by OIDC discovery)' });
    }
    if (j.jwksUri === undefined && j.jwks === undefined && j.issuer !== undefined && !secureUrl.safeParse(j.issuer).success) {
      ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'OIDC discovery needs an https:// issuer (http:// only on loopback); or set jwksUri/jwks' });
    }
  });

// ---------------------------------------------------------------- sections

const Listener = z.strictObject({
  name,
  address,
  tls: ListenerTls.optional(),
  trustedProxies: z.array(cidr).default([]),
  limits: ListenerLimits.prefault({}),
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
      headers: z.record(headerName, secretHeaderValue).optional(),
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

/**
 * Traefik's CircuitBreaker, per upstream. With neither trigger written, `consecutiveFailures: 5`
 * applies; with one or both written, exactly those apply.
 */
const CircuitBreaker = z
  .strictObject({
    consecutiveFailures: positiveInt.optional(),
    failureRatio: z.number({ error: 'must be a number between 0 and 1' }).gt(0, 'must be > 0 and <= 1').max(1, 'must be > 0 and <= 1').optional(),
    minRequests: positiveInt.default(20),
    window: duration.prefault('30s'),
    openFor: duration.prefault('30s'),
    halfOpenRequests: positiveInt.default(1),
  })
  .transform((b) => (b.consecutiveFailures === undefined && b.failureRatio === undefined ? { ...b, consecutiveFailures: 5 } : b));

/** Active checks, per endpoint: GET `path` every `interval`; 2xx and 3xx are healthy. */
const HealthCheck = z.strictObject({
  path: z.string({ error: 'must be a path such as /healthz' }).startsWith('/', 'must start with /'),
  interval: duration.prefault('5s'),
  timeout: duration.prefault('1s'),
  unhealthyThreshold: positiveInt.default(3),
  healthyThreshold: positiveInt.default(2),
});

/** Passive checks (Envoy's outlier detection): endpoints failing in live traffic leave the rotation. */
const Ejection = z.strictObject({
  consecutiveFailures: positiveInt.default(5),
  baseTime: duration.prefault('30s'),
  maxTime: duration.prefault('5m'),
  maxPercent: z.int({ error: 'must be an integer between 0 and 100' }).min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100').default(50),
});

const Upstream = z.strictObject({
  endpoints: z.array(endpoint).min(1, 'must list at least one endpoint'),
  connectTimeout: duration.prefault('1s'),
  maxConnections: positiveInt.default(256),
  tls: UpstreamTls.optional(),
  credentials: Credentials.optional(),
  loadBalancing: z.enum(['round-robin', 'least-request'], { error: 'must be "round-robin" or "least-request"' }).default('round-robin'),
  circuitBreaker: CircuitBreaker.optional(),
  maxConcurrent: positiveInt.optional(),
  healthCheck: HealthCheck.optional(),
  ejection: z.union([z.literal(false), Ejection], { error: 'must be false or an object' }).prefault({}),
}).superRefine((u, ctx) => {
  if (u.tls !== undefined && !u.endpoints.some((e) => e.protocol === 'https:')) {
    ctx.addIssue({ code: 'custom', path: ['tls'], message: 'applies to https:// endpoints, and this upstream has none' });
  }
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
    /** RE2 syntax, matched in linear time (as Envoy's safe_regex): no backreferences or lookaround. */
    pathRegex: z
      .string()
      .superRefine((re, ctx) => {
        const problem = linearRegexProblem(re);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `must be an RE2 regular expression (linear time: no backreferences or lookaround): ${problem}` });
      })
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
    host: headerValue.min(1).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.stripPrefix !== undefined && r.prefix !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'use either stripPrefix or prefix, not both' });
    }
  });

/** What `retry.on` accepts besides status codes (`503`) and classes (`5xx`). */
export const RETRY_FAILURES = ['connect-failure', 'reset', 'timeout', 'invalid-response'] as const;
const RETRY_ON_MESSAGE = `must be ${RETRY_FAILURES.join(', ')}, a status code such as 503 or a class such as 5xx`;

const retryCondition = z.union([z.int(), z.string()], { error: RETRY_ON_MESSAGE }).superRefine((v, ctx) => {
  const ok =
    typeof v === 'number'
      ? v >= 100 && v <= 599
      : (RETRY_FAILURES as readonly string[]).includes(v) || /^[1-5](?:xx|\d\d)$/i.test(v);
  if (!ok) reject(ctx, RETRY_ON_MESSAGE, v);
});

const Retry = z.strictObject({
  attempts: positiveInt.default(3),
  on: z.array(retryCondition).min(1, 'must list at least one condition').default(['connect-failure', 'reset', 'timeout', 502, 503, 504]),
  backoff: z
    .strictObject({ base: duration.prefault('100ms'), max: duration.prefault('2s') })
    .prefault({})
    .superRefine((b, ctx) => {
      if (b.max < b.base) ctx.addIssue({ code: 'custom', path: ['max'], message: 'must not be shorter than backoff.base' });
    }),
  perTryTimeout: duration.optional(),
  respectRetryAfter: z.boolean().default(true),
  budget: z.number({ error: 'must be a number between 0 and 1' }).min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1').default(0.2),
  maxBodySize: size.prefault('64kb'),
});

/** `header:<name>` or `json:<dotted.path>`: where a webhook's event id or ordering key is read. */
export type KeySource = { readonly from: 'header'; readonly name: string } | { readonly from: 'json'; readonly path: readonly string[] };

const keySource = z.string({ error: 'must be header:<name> or json:<path>' }).transform((text, ctx): KeySource => {
  const colon = text.indexOf(':');
  const kind = text.slice(0, colon);
  const rest = text.slice(colon + 1);
  if (kind === 'header' && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(rest)) return { from: 'header', name: rest.toLowerCase() };
  if (kind === 'json' && rest !== '' && rest.split('.').every((p) => p !== '')) return { from: 'json', path: rest.split('.') };
  return reject(ctx, 'must be header:<name> or json:<path> such as json:data.object.id', text);
});

/** What every provider shares: secrets (one, or several during rotation), dedupe, delivery. */
const webhookCommon = {
  secret: secret.optional(),
  secrets: z.array(secret).min(1, 'must list at least one secret').optional(),
  dedupe: z
    .strictObject({
      ttl: duration.prefault('72h'),
      /** Also where events wait for delivery; default: the first sqlite store, else <dataDir>/gatehouse.db. */
      store: name.optional(),
    })
    .prefault({}),
  delivery: z
    .strictObject({
      attempts: positiveInt.default(8),
      backoff: z.strictObject({ base: duration.prefault('1s'), max: duration.prefault('10m') }).prefault({}),
      deadLetter: z.boolean().default(true),
      orderBy: keySource.optional(),
      concurrency: positiveInt.default(8),
    })
    .prefault({}),
  /** Show bodies and headers in /admin/webhooks/recent (and keep bodies of delivered events). */
  inspect: z.boolean().default(false),
};

const Webhook = z
  .discriminatedUnion(
    'provider',
    [
      z.strictObject({ provider: z.literal('stripe'), ...webhookCommon, tolerance: duration.prefault('5m') }),
      z.strictObject({ provider: z.literal('shopify'), ...webhookCommon }),
      z.strictObject({ provider: z.literal('github'), ...webhookCommon }),
      z.strictObject({ provider: z.literal('standard'), ...webhookCommon, tolerance: duration.prefault('5m') }),
      z.strictObject({
        provider: z.literal('hmac'),
        ...webhookCommon,
        header: headerName.transform((h) => h.toLowerCase()),
        algorithm: z.enum(['sha1', 'sha256', 'sha512']).default('sha256'),
        encoding: z.enum(['hex', 'base64']).default('hex'),
        prefix: z.string().default(''),
        eventId: keySource,
      }),
    ],
    { error: 'provider must be one of "stripe", "shopify", "github", "standard", "hmac"' },
  )
  .superRefine((w, ctx) => {
    if ((w.secret === undefined) === (w.secrets === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['secret'], message: 'set either secret or secrets (a list, during rotation)' });
      return;
    }
    if (w.provider !== 'standard') return;
    const list = w.secrets ?? [w.secret!];
    list.forEach((s, i) => {
      if (!(s instanceof Secret)) return; // not a valid string: that problem is reported already
      const b64 = s.reveal().replace(/^whsec_/, '');
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || Buffer.from(b64, 'base64').length < 16) {
        ctx.addIssue({
          code: 'custom',
          path: w.secrets ? ['secrets', i] : ['secret'],
          message: 'must be a Standard Webhooks secret: whsec_ followed by base64 (at least 16 bytes)',
        });
      }
    });
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
  jwt: Jwt.optional(),
  /** Quota names (from `quotas:`) or inline quotas; every one applies. */
  quota: z.array(z.union([name, Quota])).min(1, 'must list at least one quota').optional(),
  /** Order in which queued requests of shared quotas are released. */
  priority: z.enum(['high', 'normal', 'low']).default('normal'),
  retry: Retry.optional(),
  idempotencyKey: z.literal('generate', { error: 'must be "generate"' }).optional(),
  webhook: Webhook.optional(),
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
 * schema's own instead of only once the rest is valid. Values in messages go through `quote`, which
 * the loader makes print `***` for secrets.
 */
export function crossCheck(value: unknown, quote: Quote = (v) => JSON.stringify(v)): { path: PropertyKey[]; message: string }[] {
  const problems: { path: PropertyKey[]; message: string }[] = [];
  const root = asRecord(value);
  const listeners = new Set<string>();
  const addresses = new Map<string, number>();
  asArray(root.listeners).forEach((l, i) => {
    const { name: n, address: a } = asRecord(l);
    if (typeof n === 'string') {
      if (listeners.has(n)) problems.push({ path: ['listeners', i, 'name'], message: `duplicate listener name ${quote(n, ['listeners', i, 'name'])}` });
      listeners.add(n);
    }
    const parsed = typeof a === 'string' ? parseAddress(a) : undefined;
    if (parsed && parsed.port !== 0) {
      const key = `${parsed.host}:${parsed.port}`;
      const other = addresses.get(key);
      const path = ['listeners', i, 'address'];
      if (other !== undefined) problems.push({ path, message: `address ${quote(key, path)} is already used by listeners[${other}]` });
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
      if (routes.has(route.name)) problems.push({ path: ['routes', i, 'name'], message: `duplicate route name ${quote(route.name, ['routes', i, 'name'])}` });
      routes.add(route.name);
    }
    if (typeof route.listener === 'string' && !listeners.has(route.listener)) {
      problems.push({ path: ['routes', i, 'listener'], message: `unknown listener ${quote(route.listener, ['routes', i, 'listener'])} (defined: ${[...listeners].join(', ') || 'none'})` });
    }
    if (typeof route.upstream === 'string' && !upstreams.includes(route.upstream)) {
      problems.push({ path: ['routes', i, 'upstream'], message: `unknown upstream ${quote(route.upstream, ['routes', i, 'upstream'])} (defined: ${upstreams.join(', ') || 'none'})` });
    }
    const store = asRecord(asRecord(route.webhook).dedupe).store;
    if (typeof store === 'string' && !Object.hasOwn(asRecord(root.stores), store)) {
      const defined = Object.keys(asRecord(root.stores));
      problems.push({ path: ['routes', i, 'webhook', 'dedupe', 'store'], message: `unknown store "${store}" (defined: ${defined.join(', ') || 'none'})` });
    }
    if (asRecord(route.rewrite).prefix !== undefined && asRecord(route.match).pathPrefix === undefined) {
      problems.push({ path: ['routes', i, 'rewrite', 'prefix'], message: 'needs match.pathPrefix: it replaces the matched prefix' });
    }
    checkRouteQuotas(route, i, quotas, quote, problems);
  });
  for (const [q, def] of Object.entries(quotas)) checkQuotaStore(asRecord(def), ['quotas', q], stores, quote, problems);
  asArray(root.routes).forEach((r, i) => {
    asArray(asRecord(r).quota).forEach((item, j) => {
      if (item !== null && typeof item === 'object') checkQuotaStore(asRecord(item), ['routes', i, 'quota', j], stores, quote, problems);
    });
  });
  return problems;
}

/** Quota references of one route: names that exist, no quota twice, `jwt:` keys only behind `jwt`. */
function checkRouteQuotas(
  route: Record<string, unknown>,
  i: number,
  quotas: Record<string, unknown>,
  quote: Quote,
  problems: { path: PropertyKey[]; message: string }[],
): void {
  const seen = new Set<string>();
  asArray(route.quota).forEach((item, j) => {
    const path = ['routes', i, 'quota', j];
    let def: Record<string, unknown>;
    if (typeof item === 'string') {
      if (!Object.hasOwn(quotas, item)) {
        problems.push({ path, message: `unknown quota ${quote(item, path)} (defined: ${Object.keys(quotas).join(', ') || 'none'})` });
        return;
      }
      if (seen.has(item)) problems.push({ path, message: `quota ${quote(item, path)} is listed twice` });
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
      const at = typeof item === 'string' ? path : [...path, 'key'];
      const which = typeof item === 'string' ? `quota ${quote(item, path)} counts` : 'counts';
      problems.push({ path: at, message: `${which} by ${quote(def.key, at)}, which needs jwt on this route` });
    }
  });
}

/** A quota's `store` must name a memory or redis store (sqlite is for webhooks). */
function checkQuotaStore(
  def: Record<string, unknown>,
  path: PropertyKey[],
  stores: Record<string, unknown>,
  quote: Quote,
  problems: { path: PropertyKey[]; message: string }[],
): void {
  if (typeof def.store !== 'string') return;
  const at = [...path, 'store'];
  if (!Object.hasOwn(stores, def.store)) {
    problems.push({ path: at, message: `unknown store ${quote(def.store, at)} (defined: ${Object.keys(stores).join(', ') || 'none'})` });
    return;
  }
  const type = asRecord(stores[def.store]).type;
  if (type !== 'memory' && type !== 'redis') {
    problems.push({ path: at, message: `store ${quote(def.store, at)} is ${String(type)}: quotas use a memory or redis store` });
  }
}
/** Quotes a config value for an error message; the loader's version prints `***` for secrets. */
export type Quote = (value: unknown, path: readonly PropertyKey[]) => string;

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
export type RetryConfig = NonNullable<RouteConfig['retry']>;
export type CircuitBreakerConfig = NonNullable<UpstreamConfig['circuitBreaker']>;
export type HealthCheckConfig = NonNullable<UpstreamConfig['healthCheck']>;
export type EjectionConfig = Exclude<UpstreamConfig['ejection'], false>;
export type ListenerTlsConfig = NonNullable<ListenerConfig['tls']>;
export type UpstreamTlsConfig = NonNullable<UpstreamConfig['tls']>;
export type CredentialsConfig = NonNullable<UpstreamConfig['credentials']>;
export type JwtConfig = NonNullable<RouteConfig['jwt']>;
export type WebhookConfig = NonNullable<RouteConfig['webhook']>;
