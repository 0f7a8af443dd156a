#!/usr/bin/env node
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseDocument } from 'yaml';
import { ConfigError } from '../config/errors.js';
import { startGatehouse, type Gatehouse } from '../gatehouse.js';
import { startDemoAuth } from './auth.js';
import type { DemoServer } from './http.js';
import { formatSpans, startOtlpReceiver } from './otlp-receiver.js';
import { startFlakyProvider } from './provider.js';
import { startShopApi } from './shop-api.js';
import { startDemoStore } from './store.js';

/*
 * `npm run demo`: a demo store, a flaky payment provider, a Shopify-like API, an identity
 * provider and gatehouse in front of them, all on loopback in this one process, then a page of
 * curl commands to paste, in order. Ctrl-C (or SIGTERM) drains gatehouse, stops everything and
 * exits 0. test/integration/demo.test.ts runs every command it prints.
 */

interface PortSpec {
  readonly env: string;
  readonly port: number;
  readonly what: string;
}

const DEFAULTS = {
  inbound: { env: 'DEMO_INBOUND_PORT', port: 8080, what: "gatehouse's inbound listener" },
  outbound: { env: 'DEMO_OUTBOUND_PORT', port: 15001, what: "gatehouse's outbound listener" },
  admin: { env: 'DEMO_ADMIN_PORT', port: 9901, what: "gatehouse's admin API" },
  store: { env: 'DEMO_STORE_PORT', port: 3000, what: 'the demo store' },
  provider: { env: 'DEMO_PROVIDER_PORT', port: 3100, what: 'the demo payment provider' },
  auth: { env: 'DEMO_AUTH_PORT', port: 3200, what: 'the demo identity provider' },
  shopify: { env: 'DEMO_SHOPIFY_PORT', port: 3300, what: 'the demo Shopify-like API' },
  otlp: { env: 'DEMO_OTLP_PORT', port: 4318, what: 'the built-in OTLP/HTTP trace receiver' },
} as const satisfies Record<string, PortSpec>;

type Ports = { readonly [K in keyof typeof DEFAULTS]: PortSpec };

const DEMO_CONFIG = fileURLToPath(new URL('../../config/examples/demo.yaml', import.meta.url));

async function main(): Promise<number> {
  const env = process.env;
  let ports: Ports;
  try {
    ports = readPorts(env);
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    return 2;
  }

  // Traces go to the user's collector when OTEL_* says so, else to the built-in receiver.
  const collector = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const tracesOff = env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true';
  const builtInReceiver = collector === undefined && !tracesOff;

  const wanted = Object.values(ports).filter((p) => p !== ports.otlp || builtInReceiver);
  const taken = (await Promise.all(wanted.map(async (p) => ({ p, problem: await probePort(p.port) })))).filter((x) => x.problem);
  if (taken.length > 0) {
    for (const { p, problem } of taken) {
      process.stderr.write(`demo: port ${p.port} for ${p.what} is not available (${problem}); set ${p.env} to a free port\n`);
    }
    return 1;
  }

  const servers: DemoServer[] = [];
  let gatehouse: Gatehouse | undefined;
  let tmp: string | undefined;
  const stopAll = async () => {
    await gatehouse?.shutdown(); // drains requests in flight and flushes the last spans
    // the receiver goes last: it still takes the spans flushed above
    for (const s of servers.reverse()) await s.close();
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  };

  try {
    if (builtInReceiver) {
      servers.push(await startOtlpReceiver(ports.otlp.port, (spans) => process.stdout.write(formatSpans(spans).map((l) => l + '\n').join(''))));
    }
    let configFile = DEMO_CONFIG;
    if (Object.entries(ports).some(([k, p]) => p.port !== DEFAULTS[k as keyof Ports].port)) {
      tmp = mkdtempSync(join(tmpdir(), 'gatehouse-demo-'));
      configFile = join(tmp, 'demo.yaml');
      writeFileSync(configFile, withPorts(readFileSync(DEMO_CONFIG, 'utf8'), ports));
    }
    const demo = demoSettings(readFileSync(configFile, 'utf8'));
    const auth = await startDemoAuth({ port: ports.auth.port, issuer: demo.issuer, audience: demo.audience });
    servers.push(auth);
    servers.push(await startShopApi({ port: ports.shopify.port }));
    servers.push(
      await startFlakyProvider({
        port: ports.provider.port,
        webhook: { url: `http://127.0.0.1:${ports.inbound.port}${demo.webhookPath}`, secret: demo.webhookSecret },
      }),
    );
    servers.push(
      await startDemoStore({ port: ports.store.port, paymentsUrl: `http://127.0.0.1:${ports.outbound.port}/payments/v1/charges` }),
    );
    // the built-in receiver reads OTLP/JSON (the exporters' default is protobuf)
    const gatehouseEnv = builtInReceiver
      ? { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${ports.otlp.port}`, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }
      : env;
    gatehouse = await startGatehouse({ configFile, env: gatehouseEnv });
    const token = await auth.mint('shopper-42', '24h');
    process.stdout.write(guide(ports, configFile, builtInReceiver ? 'receiver' : tracesOff ? 'off' : collector!, token));
  } catch (err) {
    const message = err instanceof ConfigError ? `the demo config is invalid:\n${err.message}` : (err as Error).message;
    process.stderr.write(`demo: cannot start: ${message}\n`);
    await stopAll().catch(() => {});
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      // Ctrl-C under `npm run demo` arrives twice (from the terminal, and forwarded by npm);
      // stopping is bounded by demo.yaml's drainTimeout anyway.
      if (stopping) return;
      stopping = true;
      process.stdout.write(`\n${signal}: stopping gatehouse (draining requests in flight) and the demo servers...\n`);
      stopAll().then(
        () => {
          process.stdout.write('demo stopped\n');
          resolve(0);
        },
        (err: unknown) => {
          process.stderr.write(`demo: stopping failed: ${(err as Error).message}\n`);
          resolve(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

function readPorts(env: NodeJS.ProcessEnv): Ports {
  const out: Record<string, PortSpec> = {};
  for (const [key, spec] of Object.entries(DEFAULTS)) {
    const text = env[spec.env];
    if (text === undefined || text === '') {
      out[key] = spec;
      continue;
    }
    const port = Number(text);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${spec.env} must be a port number from 1 to 65535 (got ${JSON.stringify(text)})`);
    out[key] = { ...spec, port };
  }
  const seen = new Map<number, string>();
  for (const spec of Object.values(out)) {
    const other = seen.get(spec.port);
    if (other !== undefined) throw new Error(`${spec.env} and ${other} are both ${spec.port}; give each a port of its own`);
    seen.set(spec.port, spec.env);
  }
  return out as unknown as Ports;
}

/** Resolves undefined when the port can be bound on loopback, else the reason it cannot. */
function probePort(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE' ? 'already in use' : (err.code ?? err.message)));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(undefined)));
  });
}

/** demo.yaml with the ports the DEMO_*_PORT variables ask for; comments are kept. */
export function withPorts(text: string, ports: Ports): string {
  const doc = parseDocument(text);
  const listeners = doc.getIn(['listeners']) as { items: unknown[] } | undefined;
  listeners?.items.forEach((_item, i) => {
    const name = doc.getIn(['listeners', i, 'name']);
    if (name === 'inbound') doc.setIn(['listeners', i, 'address'], `127.0.0.1:${ports.inbound.port}`);
    if (name === 'outbound') doc.setIn(['listeners', i, 'address'], `127.0.0.1:${ports.outbound.port}`);
  });
  doc.setIn(['admin', 'address'], `127.0.0.1:${ports.admin.port}`);
  doc.setIn(['upstreams', 'store', 'endpoints', 0], `http://127.0.0.1:${ports.store.port}`);
  doc.setIn(['upstreams', 'payments', 'endpoints', 0], `http://127.0.0.1:${ports.provider.port}`);
  doc.setIn(['upstreams', 'shopify', 'endpoints', 0], `http://127.0.0.1:${ports.shopify.port}`);
  const routes = doc.getIn(['routes']) as { items: unknown[] } | undefined;
  routes?.items.forEach((_item, i) => {
    if (doc.hasIn(['routes', i, 'jwt', 'jwksUri'])) doc.setIn(['routes', i, 'jwt', 'jwksUri'], `http://127.0.0.1:${ports.auth.port}/.well-known/jwks.json`);
  });
  return doc.toString();
}

interface DemoSettings {
  readonly issuer: string;
  readonly audience: string;
  readonly webhookPath: string;
  readonly webhookSecret: string;
}

/** What the demo's identity and payment providers must agree on with demo.yaml: read from it. */
function demoSettings(text: string): DemoSettings {
  const config = parse(text) as { routes?: { name?: string; match?: { path?: string }; jwt?: { issuer?: string; audiences?: string[] }; webhook?: { secret?: string } }[] };
  const account = config.routes?.find((r) => r.name === 'account')?.jwt;
  const hooks = config.routes?.find((r) => r.name === 'stripe-webhooks');
  if (account?.issuer === undefined || account.audiences?.[0] === undefined || hooks?.match?.path === undefined || hooks.webhook?.secret === undefined) {
    throw new Error("the demo config needs the routes 'account' (jwt with issuer and audiences) and 'stripe-webhooks' (match.path, webhook.secret)");
  }
  return { issuer: account.issuer, audience: account.audiences[0], webhookPath: hooks.match.path, webhookSecret: hooks.webhook.secret };
}

function guide(p: Ports, configFile: string, traces: string, token: string): string {
  const gh = `http://127.0.0.1:${p.inbound.port}`;
  const out = `http://127.0.0.1:${p.outbound.port}`;
  const admin = `http://127.0.0.1:${p.admin.port}`;
  const provider = `http://127.0.0.1:${p.provider.port}`;
  const tracesLine =
    traces === 'receiver'
      ? `spans are printed below as [trace ...] lines (built-in OTLP/HTTP receiver on 127.0.0.1:${p.otlp.port})`
      : traces === 'off'
        ? 'off (OTEL_SDK_DISABLED=true)'
        : `sent to your collector at ${traces}`;
  return `
gatehouse demo is running. Ctrl-C stops everything.

  store              http://127.0.0.1:${p.store.port}    the application (gatehouse's inbound upstream)
  payment provider   ${provider}    flaky on purpose: 503, 500, 429 + Retry-After, slow; sends Stripe-signed webhooks
  Shopify-like API   http://127.0.0.1:${p.shopify.port}    allows 2 requests per second, answers 429 beyond
  identity provider  http://127.0.0.1:${p.auth.port}    signs the demo's tokens, serves their keys (JWKS)
  gatehouse          inbound  ${gh}    the world -> the store
                     outbound ${out}   the store -> the provider and the Shopify-like API
                     admin    ${admin}
  traces             ${tracesLine}
  config             ${configFile}
                     (edit it while this runs: gatehouse reloads it within 2 s)

Paste the commands in this order; the comment after each says what it answers.

1. Routing: inbound /api/* goes to the store with /api stripped
  curl -s ${gh}/api/products                      # 200: the products
  curl -s -X POST ${gh}/api/cart -H 'content-type: application/json' -d '{"productId":"tee","quantity":2}'   # 200: the cart

2. A quota per client address on the catalogue: 5 requests, then one more every 2 s. Six in a
   row end in 429 rate_limited; every answer carries the RateLimit headers, the 429 Retry-After too
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -D - ${gh}/api/products | grep -iE '^(HTTP/|ratelimit|retry-after)'; done

3. JWT: /api/account needs a token from the identity provider. This one is for shopper-42,
   signed by its key and valid for 24 h; gatehouse checks it against the published JWKS
  curl -s ${gh}/api/account -H 'authorization: Bearer ${token}'   # 200: {"user":"shopper-42",...}, the verified sub
  curl -i ${gh}/api/account                       # 401 unauthorized with WWW-Authenticate: Bearer (no token)

4. Checkout: the store calls the provider through gatehouse's outbound listener. About one
   charge in three fails or is slow on its first try; gatehouse tries again with the same
   Idempotency-Key (the trace shows each try: CLIENT ... retry 1), so every checkout succeeds
  curl -s -X POST ${gh}/api/checkout              # 201: the order and its charge

5. Errors gatehouse makes itself: application/problem+json with a gatehouse-error header.
   x-demo-fault: none | 503 | 500 | 429 | slow | down makes every try of the provider do that
  curl -i ${gh}/nope                              # 404 no_route
  curl -i -X POST ${out}/payments/v1/charges -H 'x-demo-fault: slow'   # 504 upstream_timeout: route timeout 2s (2 tries failed)
  curl -i -X POST ${out}/payments/v1/charges -H 'x-demo-fault: down'   # 502 bad_gateway: the provider hung up on 3 tries
  curl -i -X POST ${out}/payments/v1/charges -H 'x-demo-fault: down'   # 503 circuit_open: 5 failed tries in a row opened the breaker
   (for 10 s the provider is not called at all; a checkout meanwhile says "payment failed")
  head -c 20000 /dev/zero | curl -i ${gh}/api/cart --data-binary @-   # 413 payload_too_large

6. A paced queue: the Shopify-like API allows 2 requests per second. Six inventory syncs at
   once, then an order: gatehouse queues them (quota shopify-api, onExceed: queue) and releases
   two per second by priority, so none gets the API's 429 and the order (high) goes before the
   syncs still waiting (low). Lines print as requests finish: the order's third, within ~0.5 s
  (for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w 'sync  %{http_code} after %{time_total}s\\n' ${out}/shopify/inventory & done; sleep 0.3; curl -s -o /dev/null -w 'order %{http_code} after %{time_total}s\\n' -X POST ${out}/shopify/orders; wait)

7. Webhooks: the provider signs a charge.succeeded event with the stripe SDK's own helper and
   posts it to gatehouse, which checks the signature, stores the event, answers 200 and then
   delivers it to the store; the provider prints what gatehouse answered
  curl -s -X POST ${provider}/demo/send-webhook              # gatehouse: 200, gatehouse-webhook: accepted
  curl -s -X POST '${provider}/demo/send-webhook?resend=last'   # gatehouse: 200, gatehouse-webhook: duplicate (not delivered again)
  curl -i -X POST ${gh}/webhooks/stripe -d '{"id":"evt_forged"}'   # 401 invalid_signature: no Stripe-Signature
  curl -s '${admin}/admin/webhooks/recent?route=stripe-webhooks'   # the event: delivered to the store, with its headers and body

8. Admin API
  curl -s ${admin}/metrics | grep -E '^(gatehouse_(retries_total|circuit_state|ratelimit_decisions_total|webhook_events_total)|http_server_request_duration_seconds_count)'
  curl -s ${admin}/admin/upstreams                # per upstream: breaker state (payments: opened in step 5, for 10 s), endpoints
  curl -s ${admin}/admin/quotas                   # catalogue-0 (per address) and shopify-api with its queue
  curl -s ${admin}/admin/config                   # the running config, secrets as ***
  curl -s -X POST ${admin}/admin/reload           # 200: {"version":1,"changed":false} while the file is as it was

Below: the access log (one JSON line per request, stdout), gatehouse's own log (stderr) and the spans.

`;
}

// Exit explicitly once stopped: everything this process started is closed by then.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
