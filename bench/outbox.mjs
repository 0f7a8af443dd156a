#!/usr/bin/env node
// Outbox benchmark (SPEC §11): accepted messages per second and gatehouse CPU per message for
// `delivery: { mode: async }` with the sqlite store (fsync before each 202, group commit) and the
// Redis store, next to a plain proxied POST of the same 2 KiB body; then the delivery lag (202 ->
// the upstream has it) p50/p99 at a fixed rate below saturation.
//
//   npm run bench:outbox [-- --duration 5] [--warmup 3] [--connections 32] [--rounds 3]
//                           [--scenarios proxy,sqlite,redis] [--rate 100] [--lag-seconds 5]
//
// Method (../shared/BENCHMARKING.md): gatehouse alone on CPU 1 (taskset), the load generator
// (autocannon), the upstream (the "ERP") and redis-server on CPU 0. gatehouse CPU per message is
// read from /proc/<pid>/stat and covers the intake and the background delivery of the measured
// messages. Each message carries the time it was sent; the upstream records the lag.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    scenarios: { type: 'string', default: 'proxy,sqlite,redis' },
    rounds: { type: 'string', default: '3' },
    rate: { type: 'string', default: '100' },
    'lag-seconds': { type: 'string', default: '5' },
  },
});
const ROOT = resolve(import.meta.dirname, '..');
const PAD = 'x'.repeat(2048);
const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (hasTaskset) execFileSync('taskset', ['-pc', '0', String(process.pid)], { stdio: 'ignore' });
const pinned = (cpu, cmd, argv) => (hasTaskset ? ['taskset', ['-c', String(cpu), cmd, ...argv]] : [cmd, argv]);

async function freePort() {
  const s = createNetServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

async function startRedis() {
  const port = await freePort();
  const [cmd, argv] = pinned(0, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  const child = spawn(cmd, argv, { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    try {
      execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'pipe' });
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

/** The ERP: answers 201 at once and records each message's lag (sent -> received) and duplicates by Idempotency-Key. */
async function startErp() {
  const lags = [];
  const seen = new Set();
  let duplicates = 0;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const key = req.headers['idempotency-key'];
      if (key !== undefined && seen.has(key)) duplicates++;
      seen.add(key ?? `${seen.size}`);
      const sentAt = Number(/"sentAt":(\d+(?:\.\d+)?)/.exec(Buffer.concat(chunks).toString())?.[1]);
      lags.push(performance.timeOrigin + performance.now() - sentAt);
      res.writeHead(201).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${server.address().port}`, lags, seen, dupes: () => duplicates, close: () => server.close() };
}

async function startGatehouse(erpUrl, scenario, redisUrl) {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-outbox-'));
  const port = await freePort();
  const admin = await freePort();
  const stores = scenario === 'redis' ? `stores: { shared: { type: redis, url: "${redisUrl}", commandTimeout: 2s } }` : '';
  const delivery = scenario === 'proxy' ? '' : `    delivery: { mode: async, backoff: { base: 100ms, max: 1s }, concurrency: 32${scenario === 'redis' ? ', store: shared' : ''} }`;
  writeFileSync(
    join(dir, 'gatehouse.yaml'),
    `version: 1
listeners: [{ name: out, address: 127.0.0.1:${port} }]
admin: { address: 127.0.0.1:${admin} }
dataDir: ${join(dir, 'data')}
telemetry: { accessLog: off }
upstreams: { erp: { endpoints: [${erpUrl}] } }
${stores}
routes:
  - name: erp-orders
    listener: out
    match: { pathPrefix: /erp }
    upstream: erp
${delivery}
`,
  );
  const [cmd, argv] = pinned(1, process.execPath, ['--max-semi-space-size=64', join(ROOT, 'dist/main.js'), 'run', '-c', join(dir, 'gatehouse.yaml')]);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  for (let i = 0; i < 300 && !log.includes('"gatehouse started"'); i++) await new Promise((r) => setTimeout(r, 50));
  if (!log.includes('"gatehouse started"')) throw new Error(`gatehouse did not start:\n${log}`);
  // a Redis store connects a moment after the start
  if (scenario === 'redis') {
    for (let i = 0; i < 100; i++) {
      const text = await fetch(`http://127.0.0.1:${admin}/metrics`).then((r) => r.text());
      if (/gatehouse_store_up\{store="shared"\} 1/.test(text)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { url: `http://127.0.0.1:${port}`, pid: child.pid, stop: () => child.kill('SIGINT') };
}

const cpuMs = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in clock ticks of 10 ms
};

let seq = 0;
const order = (req) => ({
  ...req,
  method: 'POST',
  path: '/erp/orders',
  headers: { ...req.headers, 'content-type': 'application/json' },
  body: `{"order":${++seq},"sentAt":${performance.timeOrigin + performance.now()},"pad":"${PAD}"}`,
});

function load(url, seconds, rate) {
  return new Promise((resolvePromise, reject) => {
    const instance = autocannon(
      { url, connections: rate === undefined ? Number(args.connections) : 8, duration: seconds, overallRate: rate, requests: [{ setupRequest: order }] },
      (err, result) => (err ? reject(err) : resolvePromise(result)),
    );
    autocannon.track(instance, { renderProgressBar: false, renderResultsTable: false, renderLatencyTable: false, outputStream: { write() {}, isTTY: false } });
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const accepted = (r, scenario) => (scenario === 'proxy' ? r['2xx'] : r.statusCodeStats?.['202']?.count ?? r['2xx']);
const drained = async (erp, n) => {
  const deadline = performance.now() + 120_000;
  while (erp.lags.length < n && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
};

async function measure(scenario) {
  const erp = await startErp();
  const redis = scenario === 'redis' ? await startRedis() : undefined;
  const gh = await startGatehouse(erp.url, scenario, redis?.url);
  try {
    const warm = await load(gh.url, Number(args.warmup));
    await drained(erp, accepted(warm, scenario));
    erp.lags.length = 0;
    // saturation: as many as 32 connections get accepted
    const before = cpuMs(gh.pid);
    const measured = await load(gh.url, Number(args.duration));
    const ok = accepted(measured, scenario);
    await drained(erp, ok);
    const cpu = cpuMs(gh.pid) - before; // intake and delivery of the measured messages
    const saturated = { reqs: Math.round(ok / Number(args.duration)), p50: measured.latency.p50, p99: measured.latency.p99, errors: measured.non2xx + measured.errors, cpuUs: Math.round((cpu * 1000) / ok), delivered: erp.lags.length, ok };
    // below saturation: a fixed rate; lag = sent -> the ERP has it
    erp.lags.length = 0;
    const paced = await load(gh.url, Number(args['lag-seconds']), Number(args.rate));
    await drained(erp, accepted(paced, scenario));
    return { ...saturated, lag50: pct(erp.lags, 50), lag99: pct(erp.lags, 99), dupes: scenario === 'proxy' ? '-' : erp.dupes() };
  } finally {
    gh.stop();
    redis?.stop();
    erp.close();
  }
}

const scenarios = args.scenarios.split(',');
const runs = new Map(scenarios.map((s) => [s, []]));
for (let round = 0; round < Number(args.rounds); round++) {
  // interleaved, order rotated each round (BENCHMARKING.md)
  const orderOfRound = scenarios.map((_, i) => scenarios[(i + round) % scenarios.length]);
  for (const s of orderOfRound) runs.get(s).push(await measure(s));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const table = [...runs].map(([s, rs]) => ({
  scenario: s === 'proxy' ? 'proxied POST (sync)' : `outbox async ${s}`,
  'accepted msg/s': median(rs.map((r) => r.reqs)),
  'p50 ms': median(rs.map((r) => r.p50)),
  'p99 ms': median(rs.map((r) => r.p99)),
  'CPU µs/msg': median(rs.map((r) => r.cpuUs)),
  [`lag p50 ms @${args.rate}/s`]: Math.round(median(rs.map((r) => r.lag50)) * 10) / 10,
  [`lag p99 ms @${args.rate}/s`]: Math.round(median(rs.map((r) => r.lag99)) * 10) / 10,
  'non-2xx': rs.reduce((a, r) => a + r.errors, 0),
  'delivered twice': rs.map((r) => r.dupes).join(' '),
}));
console.log(`connections ${args.connections}, ${args.rounds} rounds of ${args.duration}s (medians), 2 KiB JSON bodies; lag at ${args.rate} msg/s for ${args['lag-seconds']}s; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
console.table(table);
