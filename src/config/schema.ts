import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { z } from 'zod';
import { linearRegexProblem } from '../core/regex.js';
import { Secret } from './secret.js';
import { parseDuration, parseSize } from './units.js';
import { isLoopbackHost, LOG_LEVELS, OTLP_PROTOCOLS, readPem } from './values.js';

export { isLoopbackHost, LOG_LEVELS, OTLP_PROTOCOLS, readPem };

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

export const duration = z
  .string({ error: 'must be a duration such as 250ms, 2s, 1m or 1h' })
  .transform((text, ctx) => {
    const ms = parseDuration(text);
    return ms ?? reject(ctx, 'must be a duration such as 250ms, 2s, 1m or 1h', text);
  })
  .meta({ pattern: '^\\s*\\d+(\\.\\d+)?(ms|s|m|h)\\s*$', description: 'A duration: a number with a unit, 250ms, 2s, 1m or 1h.' });

export const size = z
  .string({ error: 'must be a size such as 512b, 64kb or 10mb' })
  .transform((text, ctx) => {
    const bytes = parseSize(text);
    return bytes ?? reject(ctx, 'must be a size such as 512b, 64kb or 10mb', text);
  })
  .meta({ pattern: '^\\s*\\d+(\\.\\d+)?([bB]|[kKmMgG][bB])\\s*$', description: 'A size: a number with a unit, 512b, 64kb, 10mb or 1gb (binary multiples).' });

/** A secret-bearing value: wrapped at load time so nothing can print it by accident. */
export const secret = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .transform((s) => new Secret(s))
  .describe('A secret: never printed (logs, errors and /admin/config show ***). Usually ${env:NAME} or ${file:/path}.');

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
  set: z.record(headerName, headerValue).default({}).describe('Headers to set (replacing any the message has), name: value. Default: none.'),
  remove: z.array(headerName).default([]).describe('Header names to remove. Default: none.'),
});

// ---------------------------------------------------------------- security building blocks


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


/** JWS algorithms for public keys. HMAC (HS*) and `none` are not accepted: no algorithm confusion. */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const ListenerTls = z
  .strictObject({
    cert: pemCert.describe('Server certificate (chain): a PEM file path, or PEM text via ${file:}/${env:}. Re-read when it changes.'),
    key: pemKey.describe('Private key of the certificate: a PEM file path or PEM text (secret).'),
    /** CA bundle that client certificates must chain to: mTLS, refused at the handshake without one. */
    clientCa: pemCert.optional().describe('CA bundle client certificates must chain to: turns on mTLS, refused at the handshake without a valid certificate.'),
    minVersion: tlsVersion.default('TLSv1.2').describe('Lowest TLS version accepted. Default: TLSv1.2.'),
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
      .optional()
      .describe('OpenSSL cipher list for TLS 1.2. Default: Mozilla "intermediate" (ECDHE with AEAD only).'),
    /** Verified client-certificate facts sent upstream; client-sent copies are always removed. */
    forwardClientCert: z
      .strictObject({
        subject: headerName.optional().describe('Header that carries the verified client certificate\'s subject (RFC 4514).'),
        fingerprint: headerName.optional().describe('Header that carries the verified client certificate\'s SHA-256 fingerprint.'),
      })
      .optional()
      .describe('Send verified client-certificate facts upstream in these headers (needs clientCa); client-sent copies are always removed.'),
  })
  .superRefine((t, ctx) => {
    if (t.forwardClientCert !== undefined && t.clientCa === undefined) {
      ctx.addIssue({ code: 'custom', path: ['forwardClientCert'], message: 'needs clientCa: only verified client certificates are forwarded' });
    }
  });

/** Limits against slow or oversized requests (slowloris, header floods, handshake floods). */
const ListenerLimits = z.strictObject({
  maxHeaderSize: size.prefault('16kb').describe('Largest request head (request line and headers); larger: 431. Default: 16kb.'),
  maxHeaders: positiveInt.default(100).describe('Most request headers accepted; more: 431. Default: 100.'),
  headersTimeout: duration.prefault('10s').describe('Longest time to receive a request\'s headers (slowloris): 408. Default: 10s.'),
  requestTimeout: duration.prefault('5m').describe('Longest time to receive a whole request: 408. Default: 5m.'),
  /** Longest a request body may go without a byte arriving (nginx's client_body_timeout): 408. */
  bodyTimeout: duration.prefault('30s').describe('Longest a request body may go without a byte arriving: 408. Default: 30s.'),
  /** Bodies up to this size are read whole before an upstream connection is taken. */
  bufferBodies: size.prefault('64kb').describe('Bodies up to this size are read whole before an upstream connection is taken, so slow senders cannot hold the pool. Default: 64kb.'),
  /** TLS listeners: a handshake not finished by then closes the socket. */
  handshakeTimeout: duration.prefault('10s').describe('TLS listeners: a handshake not finished by then closes the socket. Default: 10s.'),
  /** Open connections at most; more are refused at accept. */
  maxConnections: positiveInt.default(10_000).describe('Open connections at most on this listener; more are refused. Default: 10000.'),
  /** Forward header names that contain `_` (dropped by default, as nginx does). */
  allowUnderscoreHeaders: z.boolean().default(false).describe('Forward header names that contain _ (dropped by default, as nginx does, so x_user_id cannot shadow x-user-id). Default: false.'),
});

const UpstreamTls = z
  .strictObject({
    ca: pemCert.optional().describe('CA bundle the upstream\'s certificate must chain to (PEM path or text). Default: the system store.'),
    cert: pemCert.optional().describe('Client certificate for mTLS to the upstream (PEM path or text); goes with key.'),
    key: pemKey.optional().describe('Private key of the client certificate (PEM path or text, secret).'),
    serverName: z.string().min(1).optional().describe('Name sent as SNI and verified in the certificate. Default: the endpoint\'s host (never the client\'s Host).'),
    minVersion: tlsVersion.default('TLSv1.2').describe('Lowest TLS version used. Default: TLSv1.2.'),
    insecureSkipVerify: z.boolean().default(false).describe('Do not verify the upstream\'s certificate (logs a warning at start). Default: false.'),
  })
  .superRefine((t, ctx) => {
    if ((t.cert === undefined) !== (t.key === undefined)) {
      ctx.addIssue({ code: 'custom', path: [t.cert === undefined ? 'cert' : 'key'], message: 'cert and key go together (client certificate for mTLS)' });
    }
  });

const OAuth2 = z.strictObject({
  tokenUrl: secureUrl.describe('Token endpoint of the client-credentials grant (https://; http:// only on loopback).'),
  clientId: z.string().min(1).describe('OAuth2 client id.'),
  clientSecret: secret.describe('OAuth2 client secret (secret).'),
  scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be an OAuth2 scope token')).default([]).describe('Scopes to ask for. Default: none.'),
  authMethod: z.enum(['basic', 'post']).default('basic').describe('How the client authenticates: basic (client_secret_basic) or post (client_secret_post). Default: basic.'),
  audience: z.string().min(1).optional().describe('audience parameter sent with the token request, for providers that need one.'),
  timeout: duration.prefault('10s').describe('Longest wait for the token endpoint, in the background: a request waits at most 1 s. Default: 10s.'),
  tls: UpstreamTls.optional().describe("The token endpoint's TLS: ca, client cert/key (mTLS), serverName, minVersion, insecureSkipVerify."),
});

const Credentials = z
  .strictObject({
    header: z
      .strictObject({
        name: headerName.describe('Header name, e.g. Authorization.'),
        value: secretHeaderValue.describe('Header value, e.g. "Bearer ${env:STRIPE_KEY}" (secret).'),
      })
      .optional()
      .describe('A static header sent with every request to this upstream.'),
    oauth2: OAuth2.optional().describe('OAuth2 client-credentials: a token fetched, cached until expiry and sent as Authorization: Bearer.'),
  })
  .superRefine((c, ctx) => {
    if ((c.header === undefined) === (c.oauth2 === undefined)) ctx.addIssue({ code: 'custom', message: 'set exactly one of header and oauth2' });
  });

const claimValue = z.union([z.string(), z.number(), z.boolean()], { error: 'must be a string, number or boolean' });

const Jwt = z
  .strictObject({
    issuer: z.string().min(1).optional().describe('Required iss claim; without jwksUri and jwks, keys are found by OIDC discovery from it.'),
    audiences: z.array(z.string().min(1)).min(1).optional().describe('The aud claim must contain one of these.'),
    jwksUri: secureUrl.optional().describe('URL of the JSON Web Key Set (https://; http:// only on loopback).'),
    /** A local JWKS file, re-read on every reload. */
    jwks: z.string().min(1).optional().describe('A local JWKS file, re-read on every reload.'),
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
      .default(['RS256', 'ES256'])
      .describe('Accepted JWS algorithms (public-key only; HMAC and none never). Default: [RS256, ES256].'),
    clockTolerance: duration.prefault('30s').describe('Leeway for exp and nbf. Default: 30s.'),
    requiredScopes: z.array(z.string().min(1)).default([]).describe('Scopes the token must carry (scope or scp claim). Default: none.'),
    requiredClaims: z.record(z.string().min(1), claimValue).default({}).describe('Claims that must have exactly these values. Default: none.'),
    forwardClaims: z.record(z.string().min(1), headerName).default({}).describe('Claims sent upstream as headers, claim: header-name; client-sent copies are removed. Default: none.'),
    /** Where the token is: `Authorization: Bearer` by default, or a named header or cookie. */
    from: z
      .strictObject({
        header: headerName.optional().describe('Read the token from this header (the whole value).'),
        cookie: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a cookie name').optional().describe('Read the token from this cookie.'),
      })
      .superRefine((f, ctx) => {
        if ((f.header === undefined) === (f.cookie === undefined)) ctx.addIssue({ code: 'custom', message: 'set exactly one of header and cookie' });
      })
      .optional()
      .describe('Where the token is, when not Authorization: Bearer: one of header and cookie.'),
    /** Verified tokens remembered until they expire (0 = verify every request). */
    cacheSize: z.int({ error: 'must be an integer >= 0' }).min(0, 'must be an integer >= 0').default(1000).describe('Verified tokens remembered until they expire (0: verify every request). Default: 1000.'),
    /** Remote key set: re-fetched after maxAge, on an unknown kid at most once per cooldown. */
    jwksCache: z
      .strictObject({
        maxAge: duration.prefault('10m').describe('Re-fetch the key set after this long. Default: 10m.'),
        cooldown: duration.prefault('30s').describe('An unknown kid re-fetches at most once per cooldown. Default: 30s.'),
        timeout: duration.prefault('5s').describe('Longest wait for the key set. Default: 5s.'),
      })
      .prefault({})
      .describe('Caching of a remote key set.'),
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
  name: name.describe('The listener\'s name, which routes refer to (listener:).'),
  address: address.describe('host:port to listen on, e.g. 0.0.0.0:8080 or [::]:8443; port 0 takes a free one.'),
  tls: ListenerTls.optional().describe('Terminate TLS here (and with clientCa, require client certificates). Default: plain HTTP.'),
  trustedProxies: z.array(cidr).default([]).describe('Peers (IPs or CIDR blocks) whose X-Forwarded-* headers are believed and appended to. Default: none.'),
  limits: ListenerLimits.prefault({}).describe('Limits against slow or oversized requests.'),
});

/**
 * Where quotas and webhooks keep state. `memory`: this process only; `sqlite`: embedded and
 * durable, in `<dataDir>/gatehouse.db` unless `path` says otherwise; `redis`: shared by replicas.
 */
const Store = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('memory').describe('memory: this process only.') }),
    z.strictObject({
      type: z.literal('sqlite').describe('sqlite: embedded and durable.'),
      path: z.string().min(1).optional().describe('Database file. Default: <dataDir>/gatehouse.db.'),
    }),
    z.strictObject({
      type: z.literal('redis').describe('redis: shared by replicas.'),
      url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').describe('redis:// or rediss:// URL.'),
      keyPrefix: z.string().default('gatehouse:').describe('Prefix of every key gatehouse writes. Default: "gatehouse:".'),
      connectTimeout: duration.prefault('500ms').describe('Longest wait to connect. Default: 500ms.'),
      commandTimeout: duration.prefault('100ms').describe('Longest wait for a command; then quotas fall back to memory. Default: 100ms.'),
    }),
  ],
  { error: 'type must be one of "memory", "sqlite", "redis"' },
);

const Admin = z
  .strictObject({
    address: address.prefault('127.0.0.1:9901').describe('host:port of /healthz, /readyz, /metrics and /admin/*. Default: 127.0.0.1:9901.'),
    token: secret.optional().describe('Bearer token required for /admin/* (secret); required on a non-loopback address unless insecure. Default: none.'),
    insecure: z
      .boolean()
      .default(false)
      .describe('true: serve the admin API on a non-loopback address without a token (browser requests are still refused). Default: false.'),
  })
  .superRefine((a, ctx) => {
    if (a.token === undefined && !a.insecure && !isLoopbackHost(a.address.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['address'],
        message: 'is reachable from other machines: set admin.token, or admin.insecure: true to serve the admin API there without one',
      });
    }
  });

const otlpProtocol = z.enum(OTLP_PROTOCOLS, { error: 'must be one of "http/protobuf", "http/json", "grpc"' });
const otlpEndpoint = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });


/**
 * Unset keys fall back to the OTEL_* variables (SPEC §8) and then to gatehouse's defaults, in
 * src/telemetry/otel-env.ts: a key written here wins over its variable.
 */
const Telemetry = z.strictObject({
  serviceName: z.string().min(1).optional().describe('service.name of traces and metrics. Default: $OTEL_SERVICE_NAME, else gatehouse.'),
  logLevel: z
    .enum(LOG_LEVELS, { error: 'must be one of "debug", "info", "warn", "error"' })
    .optional()
    .describe("gatehouse's own log on stderr: debug, info, warn or error. Default: $GATEHOUSE_LOG_LEVEL, else info."),
  traces: z
    .strictObject({
      endpoint: otlpEndpoint.optional().describe('OTLP traces endpoint, e.g. http://otel-collector:4318/v1/traces. Default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT; none: no traces.'),
      protocol: otlpProtocol.optional().describe('OTLP encoding: http/protobuf, http/json or grpc. Default: $OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, $OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.'),
      sampleRatio: z.number().min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1').optional().describe('Share of new traces sampled, 0 to 1. Default: $OTEL_TRACES_SAMPLER (+ _ARG), else parent-based always on.'),
      headers: z.record(headerName, secretHeaderValue).optional().describe('Headers sent to the collector, e.g. an API key (secrets).'),
    })
    .prefault({})
    .describe('Traces exported over OTLP.'),
  metrics: z
    .strictObject({
      prometheus: z.boolean().optional().describe('Serve Prometheus metrics at the admin /metrics. Default: on, unless $OTEL_METRICS_EXPORTER leaves prometheus out.'),
      otlp: z
        .strictObject({
          endpoint: otlpEndpoint.optional().describe('OTLP metrics endpoint. Default: $OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT + /v1/metrics.'),
          protocol: otlpProtocol.optional().describe('OTLP encoding: http/protobuf, http/json or grpc. Default: $OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, $OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.'),
          interval: duration.prefault('15s').describe('Export interval. Default: 15s.'),
          headers: z.record(headerName, secretHeaderValue).optional().describe('Headers sent to the collector (secrets).'),
        })
        .optional()
        .describe('Also push metrics over OTLP.'),
    })
    .prefault({})
    .describe('Metrics: Prometheus and OTLP.'),
  accessLog: z.enum(['stdout', 'off']).default('stdout').describe('One JSON line per request on stdout, or off. Default: stdout.'),
});

/**
 * Traefik's CircuitBreaker, per upstream. With neither trigger written, `consecutiveFailures: 5`
 * applies; with one or both written, exactly those apply.
 */
const CircuitBreaker = z
  .strictObject({
    consecutiveFailures: positiveInt.optional().describe('Open after this many failures in a row. Default: 5 when failureRatio is not set either.'),
    failureRatio: z.number({ error: 'must be a number between 0 and 1' }).gt(0, 'must be > 0 and <= 1').max(1, 'must be > 0 and <= 1').optional().describe('Open when this share of requests in the window failed (once minRequests were seen).'),
    minRequests: positiveInt.default(20).describe('Requests the window needs before failureRatio applies. Default: 20.'),
    window: duration.prefault('30s').describe('Sliding window of failureRatio. Default: 30s.'),
    openFor: duration.prefault('30s').describe('How long the breaker stays open (503 circuit_open) before it lets trial requests through. Default: 30s.'),
    halfOpenRequests: positiveInt.default(1).describe('Trial requests let through when half-open. Default: 1.'),
  })
  .transform((b) => (b.consecutiveFailures === undefined && b.failureRatio === undefined ? { ...b, consecutiveFailures: 5 } : b));

/** Active checks, per endpoint: GET `path` every `interval`; 2xx and 3xx are healthy. */
const HealthCheck = z.strictObject({
  path: z.string({ error: 'must be a path such as /healthz' }).startsWith('/', 'must start with /').describe('Path checked with GET; 2xx and 3xx are healthy.'),
  interval: duration.prefault('5s').describe('Time between checks. Default: 5s.'),
  timeout: duration.prefault('1s').describe('Longest wait for a check. Default: 1s.'),
  unhealthyThreshold: positiveInt.default(3).describe('Failed checks in a row that take an endpoint out. Default: 3.'),
  healthyThreshold: positiveInt.default(2).describe('Passed checks in a row that bring it back. Default: 2.'),
});

/** Passive checks (Envoy's outlier detection): endpoints failing in live traffic leave the rotation. */
const Ejection = z.strictObject({
  consecutiveFailures: positiveInt.default(5).describe('Failures in a row that eject an endpoint. Default: 5.'),
  baseTime: duration.prefault('30s').describe('First ejection\'s length; each further one is longer. Default: 30s.'),
  maxTime: duration.prefault('5m').describe('Longest ejection. Default: 5m.'),
  maxPercent: z.int({ error: 'must be an integer between 0 and 100' }).min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100').default(50).describe('Most endpoints ejected at once, in percent. Default: 50.'),
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
 * A provider's own limits, mirrored so the store's calls wait in gatehouse instead of being
 * throttled (SPEC §12): Shopify's GraphQL query cost, its REST call limit, Stripe's limiter
 * reasons, or the generic rate-limit headers of §5.
 */
const Budget = z
  .strictObject({
    kind: z
      .enum(['shopify-graphql', 'shopify-rest', 'stripe', 'headers'], { error: 'must be shopify-graphql, shopify-rest, stripe or headers' })
      .describe('How the provider says what is left: shopify-graphql (query cost in the JSON answer), shopify-rest (X-Shopify-Shop-Api-Call-Limit), stripe (Stripe-Rate-Limited-Reason), headers (Retry-After, RateLimit, X-RateLimit-*).'),
    key: quotaKey.default('global').describe('One budget per: global (the upstream), header:<name> (e.g. the shop or account), ip or jwt:<claim>. Default: global.'),
    store: name.optional().describe('A memory or redis store from stores:; with redis every replica shares one mirror. Default: memory (per process).'),
    onExceed: z.enum(['queue', 'reject']).default('queue').describe('queue: wait (by route priority) until the budget affords the request; reject: 429 rate_limited at once. Default: queue.'),
    maxWait: duration.prefault('30s').describe('With queue: longest wait (the route timeout bounds it too); then 429 rate_limited. Default: 30s.'),
    maxQueue: positiveInt.default(1000).describe('With queue: requests waiting at most; more get 429 rate_limited. Default: 1000.'),
    initial: z
      .strictObject({
        capacity: z.number({ error: 'must be a number > 0' }).positive('must be a number > 0').optional().describe('The bucket size until the provider says: Shopify GraphQL 1000 (Standard plans), REST 40. Default: by kind.'),
        restoreRate: z.number({ error: 'must be a number > 0' }).positive('must be a number > 0').optional().describe('What the bucket regains per second until the provider says: Shopify GraphQL 50, REST 2. Default: by kind.'),
      })
      .prefault({})
      .describe('The bucket assumed before the provider\'s first answer (shopify-graphql; shopify-rest keeps restoreRate, since its header has no rate).'),
    defaultCost: positiveInt.default(10).describe('shopify-graphql: the cost reserved for a query never seen before. Default: 10.'),
    maxInspect: size.prefault('64kb').describe('shopify-graphql: longest answer held back to read its cost and a THROTTLED error before it reaches the client; longer answers stream and their cost is read from their last 4 KiB. Default: 64kb.'),
  });

/** How many requests may be in flight to the upstream: a number, or a limit that adapts (AIMD). */
const Concurrency = z
  .strictObject({
    limit: z
      .union([z.literal('adaptive'), positiveInt], { error: 'must be "adaptive" or an integer >= 1' })
      .describe('adaptive (additive increase while answers succeed at low latency, multiplicative decrease on 429, 503, timeouts or a latency rise) or a fixed number.'),
    min: positiveInt.default(1).describe('adaptive: the lowest limit. Default: 1.'),
    max: positiveInt.default(200).describe('adaptive: the highest limit. Default: 200.'),
    initial: positiveInt.optional().describe('adaptive: the limit to start from. Default: the lower of 20 and max.'),
    onExceed: z.enum(['queue', 'reject']).default('queue').describe('queue: wait (by route priority) for a slot; reject: 503 overloaded at once. Default: queue.'),
    maxWait: duration.prefault('10s').describe('With queue: longest wait for a slot (the route timeout bounds it too); then 503 overloaded. Default: 10s.'),
  })
  .superRefine((c, ctx) => {
    if (c.min > c.max) ctx.addIssue({ code: 'custom', path: ['min'], message: `must not be above max (${c.max})` });
    if (c.initial !== undefined && (c.initial < c.min || c.initial > c.max)) ctx.addIssue({ code: 'custom', path: ['initial'], message: `must be between min (${c.min}) and max (${c.max})` });
  });

const Upstream = z.strictObject({
  endpoints: z.array(endpoint).min(1, 'must list at least one endpoint').describe('http:// or https:// base URLs of the upstream\'s servers (no query, no credentials).'),
  connectTimeout: duration.prefault('1s').describe('Longest wait to connect to an endpoint. Default: 1s.'),
  maxConnections: positiveInt.default(256).describe('Pooled connections per endpoint at most. Default: 256.'),
  tls: UpstreamTls.optional().describe('TLS to https:// endpoints; verification is always on unless insecureSkipVerify.'),
  credentials: Credentials.optional().describe('Credentials injected into every request to this upstream: one of header and oauth2.'),
  loadBalancing: z.enum(['round-robin', 'least-request'], { error: 'must be "round-robin" or "least-request"' }).default('round-robin').describe('How an endpoint is picked. Default: round-robin.'),
  circuitBreaker: CircuitBreaker.optional().describe('Fail fast (503 circuit_open) while the upstream keeps failing. Default: off.'),
  maxConcurrent: positiveInt.optional().describe('Bulkhead: requests in flight at most; more get 503 overloaded at once. Default: unlimited.'),
  healthCheck: HealthCheck.optional().describe('Active health checks per endpoint. Default: off.'),
  ejection: z.union([z.literal(false), Ejection], { error: 'must be false or an object' }).prefault({}).describe('Passive checks: endpoints failing in live traffic leave the rotation for a while; false turns it off. Default: on.'),
  budget: Budget.optional().describe('Mirror the provider\'s own limits (Shopify query cost, Stripe\'s limiter reasons, rate-limit headers) so calls wait here instead of being throttled. Default: off.'),
  concurrency: Concurrency.optional().describe('Requests in flight to the upstream at most, fixed or adaptive; more wait by priority or get 503 overloaded. Default: unlimited.'),
}).superRefine((u, ctx) => {
  if (u.tls !== undefined && !u.endpoints.some((e) => e.protocol === 'https:')) {
    ctx.addIssue({ code: 'custom', path: ['tls'], message: 'applies to https:// endpoints, and this upstream has none' });
  }
});

/**
 * One rate limit: a token bucket refilled at `limit` per `per`, holding at most `burst` tokens
 * (default: `limit`). `per` is any duration, sub-second included; RateLimit-Policy announces it as
 * `w=` rounded up to whole seconds.
 */
const Quota = z
  .strictObject({
    limit: positiveInt.describe('Requests allowed per `per`.'),
    per: duration
      .refine((ms) => ms >= 1, 'must be a duration of at least 1ms, such as 500ms, 1s or 1h')
      .describe('The period of limit: any duration, sub-second included (500ms, 1s, 1m, 1h); RateLimit-Policy rounds it up to whole seconds.'),
    burst: positiveInt.optional().describe('Most tokens the bucket holds. Default: limit.'),
    key: quotaKey.default('global').describe('What is counted: global, ip, header:<name> or jwt:<claim>. Default: global.'),
    onExceed: z.enum(['reject', 'queue']).default('reject').describe('reject: 429 at once; queue: wait for a token (by route priority). Default: reject.'),
    maxWait: duration.optional().describe('With queue: longest wait for a token; then 429.'),
    maxQueue: positiveInt.optional().describe('With queue: requests waiting at most; more get 429.'),
    store: name.optional().describe('A memory or redis store from stores:. Default: a memory store.'),
    maxKeys: positiveInt
      .default(100_000)
      .describe('Buckets (distinct keys) kept in memory at most; beyond, full ones are forgotten first, then the least recently used. Default: 100000.'),
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
    path: z.string().startsWith('/', 'must start with /').optional().describe('Matches this path exactly.'),
    pathPrefix: z.string().startsWith('/', 'must start with /').optional().describe('Matches this path and the paths below it, by whole segments (/api: /api and /api/x, not /apix).'),
    /** RE2 syntax, matched in linear time (as Envoy's safe_regex): no backreferences or lookaround. */
    pathRegex: z
      .string()
      .superRefine((re, ctx) => {
        const problem = linearRegexProblem(re);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `must be an RE2 regular expression (linear time: no backreferences or lookaround): ${problem}` });
      })
      .optional()
      .describe('Matches paths this RE2 regular expression finds (linear time: no backreferences or lookaround).'),
    methods: z.array(method).min(1).optional().describe('HTTP methods matched. Default: any.'),
    host: z
      .string()
      .regex(/^(\*\.)?[A-Za-z0-9.-]+$/, 'must be a host name, optionally starting with *.')
      .transform((h) => h.toLowerCase())
      .optional()
      .describe('Request host (without port, case-insensitive); *.example.com matches one label. Default: any.'),
    headers: z.record(headerName, z.string({ error: 'must be a string' })).optional().describe('Request headers that must have exactly these values.'),
  })
  .superRefine((m, ctx) => {
    const kinds = [m.path, m.pathPrefix, m.pathRegex].filter((x) => x !== undefined).length;
    if (kinds > 1) ctx.addIssue({ code: 'custom', message: 'use only one of path, pathPrefix and pathRegex' });
  });

const Rewrite = z
  .strictObject({
    stripPrefix: z.string().startsWith('/', 'must start with /').optional().describe('Remove this prefix from the path sent upstream.'),
    prefix: z.string().startsWith('/', 'must start with /').optional().describe('Replace the matched pathPrefix with this one.'),
    host: headerValue.min(1).optional().describe('Host header sent upstream: preserve (the client\'s) or a name. Default: the endpoint\'s.'),
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
  attempts: positiveInt.default(3).describe('Tries in total, the first included. Default: 3.'),
  on: z
    .array(retryCondition)
    .min(1, 'must list at least one condition')
    .default(['connect-failure', 'reset', 'timeout', 502, 503, 504])
    .describe('What is retried: connect-failure, reset, timeout, invalid-response, status codes (503) or classes (5xx). Default: [connect-failure, reset, timeout, 502, 503, 504].'),
  backoff: z
    .strictObject({
      base: duration.prefault('100ms').describe('First delay\'s ceiling; doubles per retry. Default: 100ms.'),
      max: duration.prefault('2s').describe('Largest delay. Default: 2s.'),
    })
    .prefault({})
    .superRefine((b, ctx) => {
      if (b.max < b.base) ctx.addIssue({ code: 'custom', path: ['max'], message: 'must not be shorter than backoff.base' });
    })
    .describe('Exponential back-off with full jitter between tries.'),
  perTryTimeout: duration.optional().describe('Longest wait for one try. Default: the route timeout.'),
  respectRetryAfter: z.boolean().default(true).describe('Wait what a 429/503 Retry-After asks, within the route timeout. Default: true.'),
  budget: z.number({ error: 'must be a number between 0 and 1' }).min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1').default(0.2).describe('Retries may add at most this share to the upstream\'s load. Default: 0.2.'),
  maxBodySize: size.prefault('64kb').describe('Request bodies up to this size are kept for a retry; larger ones are sent once. Default: 64kb.'),
});

/**
 * `cache` on a route (SPEC §13): an RFC 9111 HTTP cache, shared unless `private: true`. `store`
 * is `memory` (bounded by `maxSize`, least recently used out first) or the name of a sqlite or
 * redis store from `stores:`.
 */
const Cache = z.strictObject({
  store: name.default('memory').describe('memory (this process, bounded by maxSize) or the name of a sqlite or redis store from stores:. Default: memory.'),
  maxSize: size.prefault('64mb').describe('Bound of the memory store: the least recently used answers leave first. Default: 64mb.'),
  defaultTtl: duration
    .prefault('0s')
    .describe('Freshness for cacheable answers that state none (no max-age, s-maxage or Expires); 0s: only what answers say. Default: 0s.'),
  staleWhileRevalidate: duration.prefault('0s').describe('Serve a stale copy this long past its freshness while it is refreshed in the background (RFC 5861), unless the answer says otherwise. Default: 0s.'),
  staleIfError: duration.prefault('0s').describe('Serve a stale copy this long past its freshness when the upstream fails (RFC 5861), unless the answer says otherwise. Default: 0s.'),
  private: z.boolean().default(false).describe('true: a private cache (the shared-cache rules of RFC 9111 §3.5 are off: private answers and answers to authorized requests are stored). Default: false.'),
});

/** `hedge` on a route: a second try of an idempotent request that has no answer after `after`. */
const Hedge = z.strictObject({
  after: duration.describe('Send another try when the first has no response headers after this long.'),
  max: positiveInt.default(1).describe('Hedged tries at most, the first try not counted. Default: 1.'),
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

/** An event type or a glob of them (`charge.*`): printable ASCII without spaces. */
const eventTypePattern = z
  .string({ error: 'must be an event type or a glob such as charge.*' })
  .regex(/^[\x21-\x7e]{1,200}$/, 'must be an event type or a glob such as charge.* (printable, no spaces, at most 200 characters)');

/** A destination path: absolute, no query or fragment, nothing a URL would have to escape. */
const destinationPath = z
  .string({ error: 'must be a path such as /hooks/orders' })
  .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/, 'must be a path such as /hooks/orders (starting with /, no query or spaces)');

/** One consumer of a webhook route's events (SPEC §14). */
const Destination = z.strictObject({
  name: name.describe('The destination\'s name: in metrics, /admin/webhooks/recent and replay.'),
  upstream: z.string({ error: 'must name an upstream' }).describe('The upstream (from upstreams:) its events go to.'),
  path: destinationPath.optional().describe('Path its events are delivered to. Default: the request path (after rewrite).'),
  types: z
    .array(eventTypePattern)
    .min(1, 'must list at least one event type (["*"] for every event)')
    .default(['*'])
    .describe('Event types it takes: exact names or globs where * matches any run of characters. Default: ["*"].'),
  rate: z
    .strictObject({
      limit: positiveInt.describe('Deliveries per `per`.'),
      per: duration.refine((ms) => ms >= 1, 'must be a duration of at least 1ms, such as 500ms, 1s or 1h').describe('The period of limit.'),
      burst: positiveInt.optional().describe('Deliveries at once after a quiet spell. Default: limit.'),
    })
    .optional()
    .describe('Pace of deliveries to this destination (a token bucket). Default: unpaced.'),
});

/** Providers whose event-list API gatehouse can reconcile against (one file each in webhook/reconcile/). */
export const RECONCILE_PROVIDERS: readonly string[] = ['stripe'];

const Reconcile = z.strictObject({
  upstream: z.string({ error: 'must name an upstream' }).describe('The upstream of the provider\'s API (its credentials and TLS apply), e.g. https://api.stripe.com.'),
  every: duration
    .prefault('5m')
    .refine((ms) => ms >= 1000, 'must be at least 1s')
    .describe('How often the provider\'s events are listed. Default: 5m.'),
  lookback: duration
    .prefault('24h')
    .refine((ms) => ms >= 1000, 'must be at least 1s')
    .describe('Events created this long ago or later are listed; at most dedupe.ttl. Default: 24h.'),
  settle: duration
    .prefault('1m')
    .describe('Events younger than this are left to their webhook, which is usually on its way. Default: 1m.'),
});

/** What every provider shares: secrets (one, or several during rotation), dedupe, delivery. */
const webhookCommon = {
  secret: secret.optional().describe('The signing secret (secret); or secrets:, during rotation.'),
  secrets: z.array(secret).min(1, 'must list at least one secret').optional().describe('Signing secrets, any of which verifies (rotation).'),
  dedupe: z
    .strictObject({
      ttl: duration.prefault('72h').describe('How long an event id is remembered. Default: 72h.'),
      /** Also where events wait for delivery; default: the first sqlite store, else <dataDir>/gatehouse.db. */
      store: name.optional().describe('A sqlite store from stores:, also where events wait for delivery. Default: the first sqlite store, else <dataDir>/gatehouse.db.'),
    })
    .prefault({})
    .describe('De-duplication of events by their id.'),
  delivery: z
    .strictObject({
      attempts: positiveInt.default(8).describe('Delivery tries to the upstream in total. Default: 8.'),
      backoff: z
        .strictObject({
          base: duration.prefault('1s').describe('First delay\'s ceiling. Default: 1s.'),
          max: duration.prefault('10m').describe('Largest delay. Default: 10m.'),
        })
        .prefault({})
        .describe('Back-off between delivery tries.'),
      deadLetter: z.boolean().default(true).describe('Keep events whose tries ran out, for replay from the admin API. Default: true.'),
      orderBy: keySource.optional().describe('Deliver events with the same key in order: header:<name> or json:<path>.'),
      concurrency: positiveInt.default(8).describe('Deliveries in flight at most. Default: 8.'),
    })
    .prefault({})
    .describe('Durable delivery to the route\'s upstream: acknowledged at once, delivered with retries.'),
  destinations: z
    .array(Destination)
    .min(1, 'must list at least one destination')
    .optional()
    .describe('Where events go, each with its own types, path, pace, attempts and dead letters. Default: the route\'s upstream, every event.'),
  reconcile: Reconcile.optional().describe('List the provider\'s events now and then and deliver those whose webhook never came (stripe). Default: off.'),
  /** Show bodies and headers in /admin/webhooks/recent (and keep bodies of delivered events). */
  inspect: z.boolean().default(false).describe('Show bodies and headers in /admin/webhooks/recent. Default: false.'),
  maxConcurrent: positiveInt
    .default(64)
    .describe('Bodies read at once on this route; more -> 503 overloaded before any byte of theirs is read. Default: 64.'),
};

const PROVIDER = 'Who signs: stripe, shopify, github, standard (Standard Webhooks) or hmac (any HMAC header).';
const tolerance = (where: string) => duration.prefault('5m').describe(`Largest age of the signed timestamp (${where}) accepted. Default: 5m.`);

/** A Standard Webhooks secret: `whsec_` and base64 of at least 16 bytes (the prefix may be left out). */
export function isStandardWebhooksSecret(text: string): boolean {
  const b64 = text.replace(/^whsec_/, '');
  return /^[A-Za-z0-9+/]+={0,2}$/.test(b64) && Buffer.from(b64, 'base64').length >= 16;
}
const STANDARD_SECRET_MESSAGE = 'must be a Standard Webhooks secret: whsec_ followed by base64 (at least 16 bytes)';

const Webhook = z
  .discriminatedUnion(
    'provider',
    [
      z.strictObject({ provider: z.literal('stripe').describe(PROVIDER), ...webhookCommon, tolerance: tolerance('Stripe-Signature t=') }),
      z.strictObject({ provider: z.literal('shopify').describe(PROVIDER), ...webhookCommon }),
      z.strictObject({ provider: z.literal('github').describe(PROVIDER), ...webhookCommon }),
      z.strictObject({ provider: z.literal('standard').describe(PROVIDER), ...webhookCommon, tolerance: tolerance('webhook-timestamp') }),
      z.strictObject({
        provider: z.literal('hmac').describe(PROVIDER),
        ...webhookCommon,
        header: headerName.transform((h) => h.toLowerCase()).describe('Header that carries the signature.'),
        algorithm: z.enum(['sha1', 'sha256', 'sha512']).default('sha256').describe('HMAC hash. Default: sha256.'),
        encoding: z.enum(['hex', 'base64']).default('hex').describe('Encoding of the signature. Default: hex.'),
        prefix: z.string().default('').describe('Text before the signature in the header, e.g. sha256=. Default: none.'),
        eventId: keySource.describe('Where the event id is: header:<name> or json:<path>.'),
        eventType: keySource.optional().describe('Where the event type is, for destinations\' types: header:<name> or json:<path>. Default: none.'),
      }),
    ],
    { error: 'provider must be one of "stripe", "shopify", "github", "standard", "hmac"' },
  )
  .superRefine((w, ctx) => {
    if ((w.secret === undefined) === (w.secrets === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['secret'], message: 'set either secret or secrets (a list, during rotation)' });
      return;
    }
    const seen = new Set<string>();
    w.destinations?.forEach((d, i) => {
      if (seen.has(d.name)) ctx.addIssue({ code: 'custom', path: ['destinations', i, 'name'], message: `duplicate destination name "${d.name}"` });
      seen.add(d.name);
    });
    if (w.reconcile !== undefined) {
      if (!RECONCILE_PROVIDERS.includes(w.provider)) {
        ctx.addIssue({ code: 'custom', path: ['reconcile'], message: `reconcile lists events of ${RECONCILE_PROVIDERS.join(', ')} only, not ${w.provider}` });
      } else if (w.reconcile.lookback > w.dedupe.ttl) {
        // an event listed after its id was forgotten would be delivered a second time
        ctx.addIssue({ code: 'custom', path: ['reconcile', 'lookback'], message: `must not exceed dedupe.ttl (${w.dedupe.ttl / 1000}s): an event must be remembered for as long as it can be listed` });
      }
    }
    if (w.provider !== 'standard') return;
    const list = w.secrets ?? [w.secret!];
    list.forEach((s, i) => {
      if (!(s instanceof Secret)) return; // not a valid string: that problem is reported already
      if (!isStandardWebhooksSecret(s.reveal())) ctx.addIssue({ code: 'custom', path: w.secrets ? ['secrets', i] : ['secret'], message: STANDARD_SECRET_MESSAGE });
    });
  });

const callbackUrl = z.string({ error: 'must be an http:// or https:// URL' }).superRefine((text, ctx) => {
  const url = parseUrl(text);
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.hash) {
    reject(ctx, 'must be an http:// or https:// URL without credentials or fragment', text);
  }
});

const ALWAYS_SYNC = new Set(['GET', 'HEAD', 'OPTIONS']);

/** SPEC §11: the outbox. A write the store sends out is kept until the provider took it. */
const Delivery = z.strictObject({
  mode: z.enum(['sync', 'async', 'fallback'], { error: 'must be one of "sync", "async", "fallback"' }).default('sync')
    .describe('sync: as any route. async: store durably and answer 202. fallback: send now; store and answer 202 when the upstream fails or answers 5xx/429. Default: sync.'),
  methods: z
    .array(method)
    .min(1, 'must list at least one method')
    .default(['POST', 'PUT', 'PATCH', 'DELETE'])
    .superRefine((list, ctx) => {
      list.forEach((m, i) => {
        if (ALWAYS_SYNC.has(m)) ctx.addIssue({ code: 'custom', path: [i], message: `${m} is always sent at once (sync): list writes only` });
      });
    })
    .describe('Methods that go through the outbox; GET, HEAD and OPTIONS are always sync. Default: [POST, PUT, PATCH, DELETE].'),
  store: name.optional().describe('A store from stores: (sqlite, redis, or memory: not durable). Default: the first sqlite store, else <dataDir>/gatehouse.db.'),
  orderBy: keySource.optional().describe('Deliver messages with the same key one at a time, in order: header:<name> or json:<path>.'),
  maxAge: duration.prefault('23h').describe('Then a message not yet delivered goes dead. Default: 23h (under Stripe\'s 24 h idempotency-key life).'),
  backoff: z
    .strictObject({
      base: duration.prefault('1s').describe('First delay\'s ceiling. Default: 1s.'),
      max: duration.prefault('5m').describe('Largest delay. Default: 5m.'),
    })
    .prefault({})
    .describe('Back-off between delivery tries (a Retry-After from the upstream is honoured).'),
  maxBodySize: size.prefault('1mb').describe('Larger request bodies get 413. Default: 1mb.'),
  concurrency: positiveInt.default(8).describe('Deliveries of this route in flight at most. Default: 8.'),
  callback: z
    .strictObject({
      url: callbackUrl.describe('Where gatehouse POSTs the outcome of each message (delivered or dead).'),
      secret: secret.describe('Standard Webhooks signing secret (whsec_ + base64).'),
    })
    .superRefine((c, ctx) => {
      if (c.secret instanceof Secret && !isStandardWebhooksSecret(c.secret.reveal())) ctx.addIssue({ code: 'custom', path: ['secret'], message: STANDARD_SECRET_MESSAGE });
    })
    .optional()
    .describe('Tell the store how each message ended, signed the Standard Webhooks way, retried until acknowledged.'),
});

const Route = z.strictObject({
  name: name.describe('The route\'s name: in metrics, traces, logs and problem paths.'),
  listener: z.string({ error: 'must name a listener' }).describe('The listener whose requests this route takes.'),
  match: Match.prefault({}).describe('What requests the route takes; the first route of the listener that matches wins. Default: every request.'),
  upstream: z.string({ error: 'must name an upstream' }).describe('The upstream (from upstreams:) requests go to.'),
  rewrite: Rewrite.optional().describe('Changes to the path and Host sent upstream.'),
  timeout: duration.prefault('30s').describe('The whole request, retries included: 504 upstream_timeout after it. Default: 30s.'),
  maxBodySize: size.optional().describe('Larger request bodies get 413. Default: unlimited.'),
  headers: z
    .strictObject({
      request: headerRules.prefault({}).describe('Headers changed on the way upstream.'),
      response: headerRules.prefault({}).describe('Headers changed on the way back to the client.'),
    })
    .prefault({})
    .describe('Header changes.'),
  websocket: z.boolean().default(false).describe('Pass WebSocket upgrades through. Default: false.'),
  jwt: Jwt.optional().describe('Require a valid JWT (401/403 otherwise). Default: none.'),
  /** Quota names (from `quotas:`) or inline quotas; every one applies. */
  quota: z
    .array(z.union([name.describe('The name of a quota from quotas:.'), Quota.describe('An inline quota of this route.')]))
    .min(1, 'must list at least one quota')
    .optional()
    .describe('Quota names (from quotas:) or inline quotas; every one applies.'),
  /** Order in which queued requests of shared quotas are released. */
  priority: z.enum(['high', 'normal', 'low']).default('normal').describe('Order in which queued requests of shared quotas are released. Default: normal.'),
  retry: Retry.optional().describe('Retries of idempotent requests (or ones with an Idempotency-Key). Default: none.'),
  idempotencyKey: z.literal('generate', { error: 'must be "generate"' }).optional().describe('generate: add an Idempotency-Key to POST and PATCH requests that lack one, so they can be retried.'),
  webhook: Webhook.optional().describe('Verify, de-duplicate and durably deliver signed webhooks on this route.'),
  delivery: Delivery.optional().describe('Outbound writes that survive a provider outage: sync, async or fallback through a durable outbox. Default: sync.'),
  cache: Cache.optional().describe('An RFC 9111 HTTP cache for GET and HEAD (SPEC §13). Default: none.'),
  coalesce: z.boolean().default(false).describe('true: identical GET and HEAD requests without a body share one upstream request while it is in flight. Default: false.'),
  hedge: Hedge.optional().describe('Idempotent requests: another try (to another endpoint) when the first has no answer after `after`; the first answer wins. Default: none.'),
});

export const ConfigSchema = z
  .strictObject({
    version: z.literal(1, { error: 'must be 1' }).describe('The config format\'s version: 1.'),
    listeners: z.array(Listener).min(1, 'must define at least one listener').describe('Where traffic enters: one server per listener.'),
    admin: Admin.prefault({}).describe('The admin listener: health, readiness, metrics and the admin API.'),
    dataDir: z.string().min(1).default('./data').describe('Folder of embedded durable state (sqlite stores, webhook events), relative to the working directory. Default: ./data.'),
    stores: z.record(name, Store).default({}).describe('State stores for quotas and webhooks, by name: memory, sqlite or redis. Default: none (quotas count in memory).'),
    telemetry: Telemetry.prefault({}).describe('Traces, metrics and the access log.'),
    shutdown: z
      .strictObject({ drainTimeout: duration.prefault('20s').describe('Longest wait for requests in flight at SIGTERM. Default: 20s.') })
      .prefault({})
      .describe('Graceful shutdown.'),
    upstreams: z.record(name, Upstream).default({}).describe('Where requests go, by name: endpoints and the policies that protect them.'),
    quotas: z.record(name, Quota).default({}).describe('Named quotas that routes share (a token bucket each).'),
    routes: z.array(Route).default([]).describe('Which requests go where: the first route of the listener that matches takes the request.'),
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
    const webhook = asRecord(route.webhook);
    const known = (u: unknown, path: PropertyKey[]) => {
      if (typeof u === 'string' && !upstreams.includes(u)) {
        problems.push({ path, message: `unknown upstream ${quote(u, path)} (defined: ${upstreams.join(', ') || 'none'})` });
      }
    };
    asArray(webhook.destinations).forEach((d, j) => known(asRecord(d).upstream, ['routes', i, 'webhook', 'destinations', j, 'upstream']));
    known(asRecord(webhook.reconcile).upstream, ['routes', i, 'webhook', 'reconcile', 'upstream']);
    const store = asRecord(webhook.dedupe).store;
    if (typeof store === 'string' && !Object.hasOwn(asRecord(root.stores), store)) {
      const defined = Object.keys(asRecord(root.stores));
      problems.push({ path: ['routes', i, 'webhook', 'dedupe', 'store'], message: `unknown store "${store}" (defined: ${defined.join(', ') || 'none'})` });
    }
    const delivery = asRecord(route.delivery);
    if (typeof delivery.store === 'string' && !Object.hasOwn(asRecord(root.stores), delivery.store)) {
      const defined = Object.keys(asRecord(root.stores));
      problems.push({ path: ['routes', i, 'delivery', 'store'], message: `unknown store "${delivery.store}" (defined: ${defined.join(', ') || 'none'})` });
    }
    if (route.webhook !== undefined && delivery.mode !== undefined && delivery.mode !== 'sync') {
      problems.push({ path: ['routes', i, 'delivery', 'mode'], message: 'a webhook route delivers through webhook.delivery already: delivery.mode must be sync here' });
    }
    if (asRecord(route.rewrite).prefix !== undefined && asRecord(route.match).pathPrefix === undefined) {
      problems.push({ path: ['routes', i, 'rewrite', 'prefix'], message: 'needs match.pathPrefix: it replaces the matched prefix' });
    }
    checkRouteQuotas(route, i, quotas, quote, problems);
    checkCacheStore(route, i, stores, quote, problems);
    const gated = typeof route.upstream === 'string' ? asRecord(asRecord(root.upstreams)[route.upstream]) : {};
    if (gated.budget !== undefined || gated.concurrency !== undefined) {
      // the read path's attempts (cache fills, coalesced and hedged tries) are not admitted by a budget yet
      const key = route.cache !== undefined ? 'cache' : route.coalesce === true ? 'coalesce' : route.hedge !== undefined ? 'hedge' : undefined;
      if (key !== undefined) problems.push({ path: ['routes', i, key], message: `not supported yet on a route whose upstream has a budget or a concurrency limit (upstreams.${String(route.upstream)})` });
    }
  });
  for (const [q, def] of Object.entries(quotas)) checkQuotaStore(asRecord(def), ['quotas', q], stores, quote, problems);
  for (const [u, def] of Object.entries(asRecord(root.upstreams))) checkQuotaStore(asRecord(asRecord(def).budget), ['upstreams', u, 'budget'], stores, quote, problems, 'budgets');
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

/** A route cache's `store` is `memory` or names a store from stores:. */
function checkCacheStore(route: Record<string, unknown>, i: number, stores: Record<string, unknown>, quote: Quote, problems: { path: PropertyKey[]; message: string }[]): void {
  const store = asRecord(route.cache).store;
  if (typeof store !== 'string' || store === 'memory' || Object.hasOwn(stores, store)) return;
  const at = ['routes', i, 'cache', 'store'];
  problems.push({ path: at, message: `unknown store ${quote(store, at)} (memory, or one of stores: ${Object.keys(stores).join(', ') || 'none'})` });
}

/** A quota's `store` must name a memory or redis store (sqlite is for webhooks). */
function checkQuotaStore(
  def: Record<string, unknown>,
  path: PropertyKey[],
  stores: Record<string, unknown>,
  quote: Quote,
  problems: { path: PropertyKey[]; message: string }[],
  what = 'quotas',
): void {
  if (typeof def.store !== 'string') return;
  const at = [...path, 'store'];
  if (!Object.hasOwn(stores, def.store)) {
    problems.push({ path: at, message: `unknown store ${quote(def.store, at)} (defined: ${Object.keys(stores).join(', ') || 'none'})` });
    return;
  }
  const type = asRecord(stores[def.store]).type;
  if (type !== 'memory' && type !== 'redis') {
    problems.push({ path: at, message: `store ${quote(def.store, at)} is ${String(type)}: ${what} use a memory or redis store` });
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
export type BudgetConfig = NonNullable<UpstreamConfig['budget']>;
export type ConcurrencyConfig = NonNullable<UpstreamConfig['concurrency']>;
export type CircuitBreakerConfig = NonNullable<UpstreamConfig['circuitBreaker']>;
export type HealthCheckConfig = NonNullable<UpstreamConfig['healthCheck']>;
export type EjectionConfig = Exclude<UpstreamConfig['ejection'], false>;
export type ListenerTlsConfig = NonNullable<ListenerConfig['tls']>;
export type UpstreamTlsConfig = NonNullable<UpstreamConfig['tls']>;
export type CredentialsConfig = NonNullable<UpstreamConfig['credentials']>;
export type JwtConfig = NonNullable<RouteConfig['jwt']>;
export type WebhookConfig = NonNullable<RouteConfig['webhook']>;
export type OutboxConfig = NonNullable<RouteConfig['delivery']>;
export type DestinationConfig = NonNullable<WebhookConfig['destinations']>[number];
export type ReconcileConfig = NonNullable<WebhookConfig['reconcile']>;
export type CacheConfig = NonNullable<RouteConfig['cache']>;
export type HedgeConfig = NonNullable<RouteConfig['hedge']>;
