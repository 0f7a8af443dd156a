import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

// What `npm run bench` measures: the loads wrk sends and the targets it sends them to.
//
// Adding a scenario for a capability (retry+breaker+bulkhead configured but not triggered, JWT on
// every request, quotas, webhook intake) is one entry in TARGETS:
//
//   {
//     name: 'gatehouse-jwt',
//     kind: 'gatehouse',
//     config: 'bench/gatehouse-jwt.yaml',        // a real config; ports come from ${env:BENCH_*}
//     baseline: 'gatehouse',                      // its cost is reported relative to this target
//     loads: ['get-1k-c50', 'get-1k-c1'],         // which LOADS it runs (default: all)
//     services: ['redis'],                        // started before it (see SERVICES in run.mjs)
//     setup: async (ctx) => ({                    // optional: files, keys, extra env, headers
//       env: { BENCH_JWKS: ctx.file('jwks.json', '...') },
//       headers: { authorization: 'Bearer ...' }, // sent with every request of its loads
//     }),
//   }
//
// Everything in TARGETS runs interleaved with the others, in the same rounds, so a scenario's
// cost against its baseline is measured under the same conditions.

/** One wrk load. `path` is under /api, which every proxy forwards to the upstream unchanged. */
export const LOADS = [
  { id: 'get-1k-c50', label: 'GET 1 KiB c50', method: 'GET', path: '/api/1k.bin', connections: 50 },
  { id: 'get-64k-c50', label: 'GET 64 KiB c50', method: 'GET', path: '/api/64k.bin', connections: 50 },
  { id: 'post-16k-c50', label: 'POST 16 KiB c50', method: 'POST', path: '/api/post', bodyBytes: 16 * 1024, connections: 50 },
  { id: 'get-1k-c10', label: 'GET 1 KiB c10', method: 'GET', path: '/api/1k.bin', connections: 10 },
  { id: 'get-64k-c10', label: 'GET 64 KiB c10', method: 'GET', path: '/api/64k.bin', connections: 10 },
  { id: 'post-16k-c10', label: 'POST 16 KiB c10', method: 'POST', path: '/api/post', bodyBytes: 16 * 1024, connections: 10 },
  { id: 'get-1k-c1', label: 'GET 1 KiB c1', method: 'GET', path: '/api/1k.bin', connections: 1 },
  { id: 'get-64k-c1', label: 'GET 64 KiB c1', method: 'GET', path: '/api/64k.bin', connections: 1 },
  { id: 'post-16k-c1', label: 'POST 16 KiB c1', method: 'POST', path: '/api/post', bodyBytes: 16 * 1024, connections: 1 },
];

/** `--quick`: the two loads the targets of issue 2 are stated for. */
export const QUICK_LOADS = ['get-1k-c50', 'get-1k-c1'];

/**
 * kind: 'upstream'    the origin itself (an nginx serving the same files, on the proxy's core)
 *       'gatehouse'   node <nodeFlags> dist/main.js run -c <config>; nodeFlags default to
 *                     --max-semi-space-size=64 (throughput), the sidecar's are the image's
 *       'node'        node <script> PORT UPSTREAM_URL
 *       'nginx-proxy' nginx, one worker, keep-alive reverse proxy (docs/performance.md, "A fair nginx")
 * compare: part of the main comparison table (and its ratios).
 * scheme: 'https' for a TLS listener (wrk and the harness's own clients keep their connections).
 * sidecar: also measured at a constant 1,000 req/s (RSS and CPU at that rate; see run.mjs).
 * steady: measured at that rate too when a sidecar target runs, as a floor to compare it with.
 */
export const TARGETS = [
  { name: 'direct', kind: 'upstream', label: 'upstream directly', compare: true },
  { name: 'gatehouse', kind: 'gatehouse', config: 'bench/gatehouse.yaml', label: 'gatehouse', compare: true },
  // steady: also measured at the sidecar's constant rate, as the floors it is compared with
  { name: 'reference', kind: 'node', script: 'bench/reference-proxy.mjs', label: 'reference (node:http + undici Pool.stream)', compare: true, steady: true },
  { name: 'fastify', kind: 'node', script: 'bench/fastify-proxy.mjs', label: 'fastify 5 + @fastify/http-proxy 11', compare: true },
  { name: 'nginx', kind: 'nginx-proxy', label: 'nginx 1 worker', compare: true, steady: true },
  {
    name: 'gatehouse-tracing',
    kind: 'gatehouse',
    config: 'bench/gatehouse-tracing.yaml',
    label: 'gatehouse, tracing 100% to an OTLP sink',
    baseline: 'gatehouse',
    loads: ['get-1k-c50', 'get-1k-c1'],
    services: ['otlp'],
  },
  {
    name: 'gatehouse-resilience',
    kind: 'gatehouse',
    config: 'bench/gatehouse-resilience.yaml',
    label: 'gatehouse, retry+breaker+bulkhead configured, not triggered',
    baseline: 'gatehouse',
    loads: ['get-1k-c50', 'post-16k-c50', 'get-1k-c1'],
  },
  {
    name: 'gatehouse-quota-memory',
    kind: 'gatehouse',
    config: 'bench/gatehouse-quota-memory.yaml',
    label: 'gatehouse, a quota on every request, memory store',
    baseline: 'gatehouse',
    loads: ['get-1k-c50', 'get-1k-c1'],
  },
  {
    name: 'gatehouse-quota-redis',
    kind: 'gatehouse',
    config: 'bench/gatehouse-quota-redis.yaml',
    label: 'gatehouse, a quota on every request, local Redis store',
    baseline: 'gatehouse',
    loads: ['get-1k-c50', 'get-1k-c1'],
    services: ['redis'],
  },
  {
    // The JWT scenarios' baseline: the plain route, sent the same kind of Authorization header (an
    // RS256 token, ~600 bytes) that it passes on unchecked, so only the checking is compared.
    name: 'gatehouse-bearer',
    kind: 'gatehouse',
    config: 'bench/gatehouse.yaml',
    label: 'gatehouse, requests carrying an RS256 bearer token, no jwt',
    baseline: 'gatehouse',
    loads: ['get-1k-c50', 'get-1k-c1'],
    setup: async () => ({ headers: { authorization: `Bearer ${(await signedToken('RS256')).token}` } }),
  },
  {
    // SPEC §13: a cache hit against a proxied request on the same route (target: <= 40 %)
    name: 'gatehouse-cache',
    kind: 'gatehouse',
    config: 'bench/gatehouse-cache.yaml',
    label: 'gatehouse, memory cache, every request a hit',
    baseline: 'gatehouse',
    loads: ['get-1k-c50', 'get-64k-c50', 'get-1k-c1'],
  },
  {
    name: 'gatehouse-cache-miss',
    kind: 'gatehouse',
    config: 'bench/gatehouse-cache.yaml',
    label: 'gatehouse, memory cache, every request a miss (Cache-Control: no-store)',
    baseline: 'gatehouse',
    loads: ['get-1k-c50', 'get-64k-c50', 'get-1k-c1'],
    setup: async () => ({ headers: { 'cache-control': 'no-store' } }),
  },
  {
    // The deployed sidecar (issue 16): HTTPS in, JWT (ES256, cached), a memory quota, tracing at
    // 100% to the OTLP sink, Prometheus metrics and the access log, all on at once.
    name: 'gatehouse-sidecar',
    kind: 'gatehouse',
    config: 'bench/gatehouse-sidecar.yaml',
    label: 'gatehouse sidecar (HTTPS, JWT, quota, tracing 100%, metrics, access log)',
    baseline: 'gatehouse',
    scheme: 'https',
    sidecar: true,
    nodeFlags: ['--max-semi-space-size=16'], // as the image runs it (Dockerfile's NODE_OPTIONS)
    loads: ['get-1k-c50', 'get-1k-c1'],
    services: ['otlp'],
    setup: async (ctx) => {
      const { jwk, token } = await signedToken('ES256');
      const { cert, key } = selfSigned(ctx);
      return {
        env: { BENCH_JWKS: ctx.file('jwks-sidecar.json', JSON.stringify({ keys: [jwk] })), BENCH_JWT_ALG: 'ES256', BENCH_TLS_CERT: cert, BENCH_TLS_KEY: key },
        headers: { authorization: `Bearer ${token}` },
      };
    },
  },
  jwtTarget('RS256', 'bench/gatehouse-jwt.yaml', 'cached'),
  jwtTarget('ES256', 'bench/gatehouse-jwt.yaml', 'cached'),
  jwtTarget('RS256', 'bench/gatehouse-jwt-nocache.yaml', 'verified every request'),
  jwtTarget('ES256', 'bench/gatehouse-jwt-nocache.yaml', 'verified every request'),
];

/**
 * JWT on the measured route: a key pair made here, its public half as a local JWKS file, and one
 * valid token (exp in a day) sent on every request, as a client reuses its token.
 */
function jwtTarget(alg, config, how) {
  const cached = !config.includes('nocache');
  return {
    name: `gatehouse-jwt-${alg.toLowerCase()}${cached ? '' : '-nocache'}`,
    kind: 'gatehouse',
    config,
    label: `gatehouse, JWT ${alg} on every request, ${how}`,
    baseline: 'gatehouse-bearer',
    loads: ['get-1k-c50', 'get-1k-c1'],
    setup: async (ctx) => {
      const { jwk, token } = await signedToken(alg);
      return {
        env: { BENCH_JWKS: ctx.file(`jwks-${alg}.json`, JSON.stringify({ keys: [jwk] })), BENCH_JWT_ALG: alg },
        headers: { authorization: `Bearer ${token}` },
      };
    },
  };
}

/** A fresh key pair: its public JWK and a valid token (exp in a day) signed with it. */
async function signedToken(alg) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg, use: 'sig' };
  const token = await new SignJWT({ scope: 'store:read', sub: 'customer-42' })
    .setProtectedHeader({ alg, kid: 'bench' })
    .setIssuer('https://auth.bench.example/')
    .setAudience('store-api')
    .setIssuedAt()
    .setExpirationTime('1d')
    .sign(privateKey);
  return { jwk, token };
}

/** A self-signed P-256 certificate for 127.0.0.1 (openssl), written into the run's temp dir. */
function selfSigned(ctx) {
  const key = ctx.file('sidecar.key', '');
  const cert = ctx.file('sidecar.crt', '');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  if (!readFileSync(cert, 'utf8').includes('BEGIN CERTIFICATE')) throw new Error('openssl made no certificate');
  return { cert, key };
}
