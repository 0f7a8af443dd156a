#!/usr/bin/env node
// Provider-budget benchmark (SPEC §12): one Shopify GraphQL simulator (a leaky bucket as Shopify
// documents it), the same client load twice, in one run:
//   - through gatehouse with `budget: { kind: shopify-graphql }`;
//   - as a naive client: straight to the simulator, retrying a THROTTLED answer after an
//     exponential back-off with full jitter (100 ms doubling to 5 s), as client libraries do.
// Reported per side: THROTTLED answers the client received, completed queries per second (after
// the initial burst, against the physical limit restoreRate / mean actual cost), p50/p99 latency
// of a completed query (waits and retries included), and what the simulator throttled.
//
//   npm run bench:budgets [-- --clients 10 --seconds 10]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { startShopifySim } from '../dist/demo/provider-sims.js';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '10' },
  },
});
const CLIENTS = Number(args.clients);
const SECONDS = Number(args.seconds);
const ROOT = resolve(import.meta.dirname, '..');
const CAPACITY = 400;
const RESTORE = 200;
const COSTS = { Products: { requested: 25, actual: 15 }, Orders: { requested: 45, actual: 25 } };
const MEAN_ACTUAL = 20;
const BURST_S = 2;
const QUERIES = ['query Products { products(first: 10) { nodes { id } } }', 'query Orders { orders(first: 20) { nodes { id } } }'];

const freePort = () =>
  new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });

async function startGatehouse(simUrl) {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-budget-'));
  const port = await freePort();
  const admin = await freePort();
  writeFileSync(
    join(dir, 'gatehouse.yaml'),
    `version: 1
listeners: [{ name: in, address: 127.0.0.1:${port} }]
admin: { address: 127.0.0.1:${admin} }
dataDir: ${join(dir, 'data')}
telemetry: { accessLog: off }
upstreams:
  shopify:
    endpoints: [${simUrl}]
    budget: { kind: shopify-graphql, maxWait: 60s }
routes:
  - { name: graphql, listener: in, match: { pathPrefix: / }, upstream: shopify, timeout: 60s }
`,
  );
  const child = spawn(process.execPath, [join(ROOT, 'dist/main.js'), 'run', '-c', join(dir, 'gatehouse.yaml')], { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  for (let i = 0; i < 600 && !log.includes('"gatehouse started"'); i++) await new Promise((r) => setTimeout(r, 50));
  if (!log.includes('"gatehouse started"')) throw new Error(`gatehouse did not start:\n${log}`);
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGINT') };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `CLIENTS` loops of queries for `SECONDS`; `retryThrottled` makes the naive client. */
async function run(url, retryThrottled) {
  const dispatcher = new Agent({ connections: CLIENTS * 2 });
  const t0 = performance.now();
  const done = [];
  let throttledSeen = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = c; performance.now() - t0 < SECONDS * 1000; i++) {
        const started = performance.now();
        for (let attempt = 0; ; attempt++) {
          const res = await request(`${url}/admin/api/2024-10/graphql.json`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ query: QUERIES[i % 2] }),
            dispatcher,
          });
          const text = await res.body.text();
          if (res.statusCode !== 200) {
            errors++;
            break;
          }
          if (!text.includes('"THROTTLED"')) {
            done.push({ at: performance.now() - t0, ms: performance.now() - started });
            break;
          }
          throttledSeen++;
          if (!retryThrottled) break;
          await sleep(Math.random() * Math.min(5000, 100 * 2 ** attempt));
        }
      }
    }),
  );
  await dispatcher.close();
  const window = done.filter((d) => d.at >= BURST_S * 1000 && d.at < SECONDS * 1000).length / (SECONDS - BURST_S);
  const ms = done.map((d) => d.ms).sort((a, b) => a - b);
  const pct = (p) => (ms.length === 0 ? NaN : ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]);
  return { completed: done.length, perSecond: window, p50: pct(0.5), p99: pct(0.99), throttledSeen, errors };
}

const physical = RESTORE / MEAN_ACTUAL;
const rows = [];
for (const side of ['gatehouse', 'naive client']) {
  const sim = await startShopifySim({ capacity: CAPACITY, restoreRate: RESTORE, costs: COSTS, latencyMs: 10 });
  let gh;
  try {
    gh = side === 'gatehouse' ? await startGatehouse(sim.url) : undefined;
    const r = await run(gh?.url ?? sim.url, side !== 'gatehouse');
    rows.push({ side, ...r, simThrottled: sim.stats.throttled, lowest: sim.stats.lowest });
  } finally {
    gh?.stop();
    await sim.close();
  }
}

console.log(`\nShopify GraphQL simulator: bucket ${CAPACITY}, restore ${RESTORE}/s, mean actual cost ${MEAN_ACTUAL}: physical limit ${physical} queries/s`);
console.log(`${CLIENTS} concurrent clients for ${SECONDS} s; queries/s counted after the first ${BURST_S} s (the initial burst)\n`);
console.log('| client | THROTTLED answers received | THROTTLED sent by the simulator | completed queries/s (of physical) | p50 latency | p99 latency | errors |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.side} | ${r.throttledSeen} | ${r.simThrottled} | ${r.perSecond.toFixed(2)} (${((100 * r.perSecond) / physical).toFixed(0)} %) | ${r.p50.toFixed(0)} ms | ${r.p99.toFixed(0)} ms | ${r.errors} |`,
  );
}
