#!/usr/bin/env node
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import { ConfigError } from '../config/errors.js';
import { startGatehouse, type Gatehouse } from '../gatehouse.js';
import type { DemoServer } from './http.js';
import { formatSpans, startOtlpReceiver } from './otlp-receiver.js';
import { startFlakyProvider } from './provider.js';
import { startDemoStore } from './store.js';

/*
 * `npm run demo`: a demo store, a flaky payment provider and gatehouse in front of both, all on
 * loopback in this one process, then a page of curl commands to paste. Ctrl-C (or SIGTERM)
 * drains gatehouse, stops everything and exits 0.
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
    servers.push(await startFlakyProvider({ port: ports.provider.port }));
    servers.push(
      await startDemoStore({ port: ports.store.port, paymentsUrl: `http://127.0.0.1:${ports.outbound.port}/payments/v1/charges` }),
    );
    let configFile = DEMO_CONFIG;
    if (Object.entries(ports).some(([k, p]) => p.port !== DEFAULTS[k as keyof Ports].port)) {
      tmp = mkdtempSync(join(tmpdir(), 'gatehouse-demo-'));
      configFile = join(tmp, 'demo.yaml');
      writeFileSync(configFile, withPorts(readFileSync(DEMO_CONFIG, 'utf8'), ports));
    }
    const gatehouseEnv = builtInReceiver ? { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${ports.otlp.port}` } : env;
    gatehouse = await startGatehouse({ configFile, env: gatehouseEnv });
    process.stdout.write(guide(ports, configFile, builtInReceiver ? 'receiver' : tracesOff ? 'off' : collector!));
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
      process.stdout.write(`\n${signal}: stopping gatehouse (draining requests in flight), the store and the provider...\n`);
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
  return doc.toString();
}

function guide(p: Ports, configFile: string, traces: string): string {
  const gh = `http://127.0.0.1:${p.inbound.port}`;
  const out = `http://127.0.0.1:${p.outbound.port}`;
  const admin = `http://127.0.0.1:${p.admin.port}`;
  const tracesLine =
    traces === 'receiver'
      ? `spans are printed below as [trace ...] lines (built-in OTLP/HTTP receiver on 127.0.0.1:${p.otlp.port})`
      : traces === 'off'
        ? 'off (OTEL_SDK_DISABLED=true)'
        : `sent to your collector at ${traces}`;
  return `
gatehouse demo is running. Ctrl-C stops everything.

  store             http://127.0.0.1:${p.store.port}    the application (gatehouse's inbound upstream)
  payment provider  http://127.0.0.1:${p.provider.port}    flaky on purpose: 503, 500, 429 + Retry-After, slow
  gatehouse         inbound  ${gh}    the world -> the store
                    outbound ${out}   the store -> the provider
                    admin    ${admin}
  traces            ${tracesLine}
  config            ${configFile}
                    (edit it while this runs: gatehouse reloads it within 2 s)

Routing: inbound /api/* goes to the store with /api stripped
  curl -s ${gh}/api/products
  curl -s -X POST ${gh}/api/cart -H 'content-type: application/json' -d '{"productId":"tee","quantity":2}'

Checkout: the store calls the provider through gatehouse's outbound listener; about one
try in three fails or is slow, and gatehouse tries again with the same Idempotency-Key
(the trace shows each try: CLIENT ... retry 1), so nearly every checkout succeeds
  curl -s -X POST ${gh}/api/checkout

Errors gatehouse makes itself: application/problem+json with a gatehouse-error header
  curl -i ${gh}/nope                                                      # 404 no_route
  curl -i -X POST ${out}/payments/v1/charges -H 'x-demo-fault: down'      # 502 bad_gateway (provider hangs up, 3 tries)
  curl -i -X POST ${out}/payments/v1/charges -H 'x-demo-fault: slow'      # 504 upstream_timeout (route timeout 2s)
  (run the 'down' one twice: its tries open the breaker, 503 circuit_open for 10 s without calling the provider)
  head -c 20000 /dev/zero | curl -i ${gh}/api/cart --data-binary @-       # 413 payload_too_large
  (x-demo-fault: none | 503 | 500 | 429 | slow | down picks the provider's behaviour;
   it also works on checkout: curl -s -X POST ${gh}/api/checkout -H 'x-demo-fault: 503')

Admin API
  curl -s ${admin}/metrics | grep -E '^(http_|gatehouse_)'
  curl -s ${admin}/admin/upstreams
  curl -s ${admin}/admin/config
  curl -s -X POST ${admin}/admin/reload

Below: the access log (one JSON line per request, stdout) and gatehouse's own log (stderr).

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
