// `npm run bench:read-path`: what hedging and coalescing do (SPEC §13), on loopback.
//
//   hedging     two endpoints, one of them answering after SLOW_MS on 10 % of its requests;
//               the same GETs through a route without and with `hedge: { after: HEDGE_MS }`:
//               p50, p99 and max latency, and the upstream requests made
//   coalescing  50 concurrent identical GETs to an upstream that answers after 200 ms, through a
//               route without and with `coalesce: true`: upstream requests made
//
// gatehouse runs as the CLI does (node dist/main.js run -c FILE, its own process); the upstreams
// and the client run in this process. Latencies are wall-clock: on a busy machine the absolute
// numbers move, the difference between the two routes is what the run shows.
//
//   options: --requests N (hedging, default 2000)  --concurrency N (default 10)  --json FILE
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..');
const { values: opt } = parseArgs({
  options: { requests: { type: 'string' }, concurrency: { type: 'string' }, json: { type: 'string' } },
});
const REQUESTS = Number(opt.requests ?? 2000);
const CONCURRENCY = Number(opt.concurrency ?? 10);
const SLOW_MS = 250;
const SLOW_SHARE = 0.1;
const HEDGE_MS = 30;
const COALESCE_CLIENTS = 50;

/** An upstream on 127.0.0.1:0; `delayMs(req)` decides each answer's delay. */
async function upstream(delayMs) {
  const stats = { requests: 0, byPath: new Map() };
  const server = createServer((req, res) => {
    stats.requests++;
    const path = req.url.split('?')[0].split('/')[1];
    stats.byPath.set(path, (stats.byPath.get(path) ?? 0) + 1);
    const answer = () => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end('{"rate":"4.90","currency":"EUR"}');
    };
    const ms = delayMs(req);
    if (ms > 0) setTimeout(answer, ms);
    else answer();
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${server.address().port}`, stats, close: () => new Promise((r) => server.close(r)) };
}

async function startGatehouse(yaml) {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-read-path-'));
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(file, yaml);
  const child = spawn(process.execPath, ['--max-semi-space-size=64', join(ROOT, 'dist/main.js'), 'run', '-c', file], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (c) => (log += c));
  for (let i = 0; i < 300; i++) {
    const line = log.split('\n').find((l) => l.includes('"gatehouse started"'));
    if (line !== undefined) return { child, url: `http://${JSON.parse(line).listeners.in}` };
    if (child.exitCode !== null) throw new Error(`gatehouse exited: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gatehouse did not start: ${log}`);
}

const agent = new Agent({ keepAlive: true, maxSockets: 256 });

function get(url) {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - started }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** `n` GETs of `url(i)`, `concurrency` at a time: their latencies. */
async function load(url, n, concurrency) {
  const latencies = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const r = await get(url(next++));
        if (r.status !== 200) throw new Error(`status ${r.status}`);
        latencies.push(r.ms);
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const fmt = (ms) => `${ms.toFixed(1)} ms`;

async function hedging() {
  // deterministic: every tenth request to endpoint B is slow
  let bCount = 0;
  const a = await upstream(() => 0);
  const b = await upstream(() => (++bCount % Math.round(1 / SLOW_SHARE) === 0 ? SLOW_MS : 0));
  const gh = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
telemetry: { accessLog: off }
upstreams: { rates: { endpoints: [${a.url}, ${b.url}] } }
routes:
  - { name: plain, listener: in, match: { pathPrefix: /plain }, upstream: rates, timeout: 5s }
  - { name: hedged, listener: in, match: { pathPrefix: /hedged }, upstream: rates, timeout: 5s, hedge: { after: ${HEDGE_MS}ms, max: 1 } }
`);
  try {
    await load((i) => `${gh.url}/plain/warm/${i}`, 200, CONCURRENCY);
    await load((i) => `${gh.url}/hedged/warm/${i}`, 200, CONCURRENCY);
    const rows = [];
    for (const route of ['plain', 'hedged']) {
      const before = a.stats.requests + b.stats.requests;
      const lat = await load((i) => `${gh.url}/${route}/rates?i=${i}`, REQUESTS, CONCURRENCY);
      rows.push({ route, p50: pct(lat, 50), p90: pct(lat, 90), p99: pct(lat, 99), max: lat[lat.length - 1], upstreamRequests: a.stats.requests + b.stats.requests - before });
    }
    return rows;
  } finally {
    gh.child.kill('SIGKILL');
    await Promise.all([a.close(), b.close()]);
  }
}

async function coalescing() {
  const up = await upstream(() => 200);
  const gh = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
telemetry: { accessLog: off }
upstreams: { rates: { endpoints: [${up.url}] } }
routes:
  - { name: plain, listener: in, match: { pathPrefix: /plain }, upstream: rates }
  - { name: coalesced, listener: in, match: { pathPrefix: /coalesced }, upstream: rates, coalesce: true }
`);
  try {
    const rows = [];
    for (const route of ['plain', 'coalesced']) {
      const before = up.stats.requests;
      const started = performance.now();
      const answers = await Promise.all(Array.from({ length: COALESCE_CLIENTS }, () => get(`${gh.url}/${route}/rates?to=DE`)));
      if (answers.some((r) => r.status !== 200)) throw new Error('a request failed');
      rows.push({ route, clients: COALESCE_CLIENTS, upstreamRequests: up.stats.requests - before, wallMs: performance.now() - started });
    }
    return rows;
  } finally {
    gh.child.kill('SIGKILL');
    await up.close();
  }
}

const hedge = await hedging();
const coalesce = await coalescing();
agent.destroy();

const lines = [
  `### Hedging: two endpoints, one answering after ${SLOW_MS} ms on 10 % of its requests; ${REQUESTS} GETs, ${CONCURRENCY} at a time`,
  '',
  '| route | p50 | p90 | p99 | max | upstream requests |',
  '|---|---:|---:|---:|---:|---:|',
  ...hedge.map((r) => `| ${r.route === 'hedged' ? `\`hedge: { after: ${HEDGE_MS}ms }\`` : 'no hedge'} | ${fmt(r.p50)} | ${fmt(r.p90)} | ${fmt(r.p99)} | ${fmt(r.max)} | ${r.upstreamRequests} |`),
  '',
  `### Coalescing: ${COALESCE_CLIENTS} concurrent identical GETs, the upstream answers after 200 ms`,
  '',
  '| route | upstream requests | wall time |',
  '|---|---:|---:|',
  ...coalesce.map((r) => `| ${r.route === 'coalesced' ? '`coalesce: true`' : 'no coalesce'} | ${r.upstreamRequests} | ${fmt(r.wallMs)} |`),
];
console.log(lines.join('\n'));
if (opt.json !== undefined) writeFileSync(opt.json, JSON.stringify({ hedge, coalesce }, null, 2));
