#!/usr/bin/env node
// Webhook intake benchmark: verify (Stripe signature) + dedupe + durable write + 200, for 2 KiB
// events, with the sqlite and the Redis store; and the delivery lag (p50/p99) under that load.
//
//   npm run build && node bench/webhooks.mjs [--duration 5] [--warmup 3] [--connections 32] [--rounds 3]
//                                           [--scenarios proxy,sqlite,redis,sqlite-2dest]
//
// `sqlite-2dest` fans each event out to two destinations (SPEC §14, the same store at two paths):
// its CPU per event against `sqlite` is what the second destination costs.
// `proxy` is the same route without its webhook block (a plain proxied POST of the same body):
// the baseline the webhook numbers compare with on the same machine at the same time.
//
// Method (docs/performance.md): gatehouse alone on CPU 1 (taskset), the load generator
// (autocannon), the upstream store and redis-server on CPU 0. gatehouse CPU per request is read
// from /proc/<pid>/stat. Each event carries the time it was sent; the upstream records the
// delivery lag (sent -> delivered, intake included).
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
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
  },
});
const ROOT = resolve(import.meta.dirname, '..');
const SECRET = 'whsec_bench_secret';
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

/** The store: answers 204 at once and records each event's lag (sent -> delivered). */
async function startStore() {
  const lags = [];
  const seen = new Set();
  let duplicates = 0;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const id = `${req.url} ${req.headers['gatehouse-webhook-event-id']}`; // per destination
      if (seen.has(id)) duplicates++;
      seen.add(id);
      const sentAt = Number(/"sentAt":(\d+(?:\.\d+)?)/.exec(Buffer.concat(chunks).toString())?.[1]);
      lags.push(performance.timeOrigin + performance.now() - sentAt);
      res.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${server.address().port}`, lags, seen, dupes: () => duplicates, close: () => server.close() };
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

async function startGatehouse(storeUrl, store, redisUrl) {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-wh-'));
  const port = await freePort();
  const admin = await freePort();
  const fanout = store === 'sqlite-2dest';
  const stores = store === 'redis' ? `stores: { shared: { type: redis, url: "${redisUrl}", commandTimeout: 2s } }` : '';
  const dedupeStore = store === 'redis' ? ', store: shared' : '';
  writeFileSync(
    join(dir, 'gatehouse.yaml'),
    `version: 1
listeners: [{ name: in, address: 127.0.0.1:${port} }]
admin: { address: 127.0.0.1:${admin} }
dataDir: ${join(dir, 'data')}
telemetry: { accessLog: off }
upstreams: { store: { endpoints: [${storeUrl}] } }
${stores}
routes:
  - name: stripe
    listener: in
    match: { path: /webhooks/stripe }
    upstream: store
${store === 'proxy' ? '' : `    webhook:
      provider: stripe`}
${store === 'proxy' ? '' : `      secret: ${SECRET}
      dedupe: { ttl: 1h${dedupeStore} }
      delivery: { attempts: 5, backoff: { base: 100ms, max: 1s }, concurrency: 32 }`}
${fanout ? `      destinations:
        - { name: orders, upstream: store, path: /hooks/orders }
        - { name: analytics, upstream: store, path: /hooks/analytics }` : ''}
`,
  );
  const [cmd, argv] = pinned(1, process.execPath, [...(process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : []), '--max-semi-space-size=64', join(ROOT, 'dist/main.js'), 'run', '-c', join(dir, 'gatehouse.yaml')]);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  for (let i = 0; i < 1200 && !log.includes('"gatehouse started"'); i++) await new Promise((r) => setTimeout(r, 50));
  if (!log.includes('"gatehouse started"')) throw new Error(`gatehouse did not start:\n${log}`);
  // the real gatehouse pid (taskset execs, so it is the child's own)
  return { url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${admin}`, pid: child.pid, stop: () => child.kill('SIGINT'), log: () => log };
}

const cpuMs = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in clock ticks of 10 ms
};

let seq = 0;
function signedRequest(run) {
  const id = `evt_${run}_${++seq}`;
  const body = `{"id":"${id}","object":"event","type":"payment_intent.succeeded","sentAt":${performance.timeOrigin + performance.now()},"data":{"object":{"id":"pi_${seq}","pad":"${PAD}"}}}`;
  const t = Math.floor((performance.timeOrigin + performance.now()) / 1000);
  const sig = createHmac('sha256', SECRET).update(`${t}.${body}`).digest('hex');
  return { method: 'POST', path: '/webhooks/stripe', headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${sig}` }, body };
}

function load(url, seconds, run) {
  return new Promise((resolvePromise, reject) => {
    const instance = autocannon(
      {
        url,
        connections: Number(args.connections),
        duration: seconds,
        requests: [{ setupRequest: (req) => ({ ...req, ...signedRequest(run) }) }], // keep autocannon's host: without it Host is "undefined:undefined"
      },
      (err, result) => (err ? reject(err) : resolvePromise(result)),
    );
    autocannon.track(instance, { renderProgressBar: false, renderResultsTable: false, renderLatencyTable: false, outputStream: { write() {}, isTTY: false } });
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function measure(store, round) {
  const upstream = await startStore();
  const redis = store === 'redis' ? await startRedis() : undefined;
  const gh = await startGatehouse(upstream.url, store, redis?.url);
  try {
    const warm = await load(gh.url, Number(args.warmup), `${store}w${round}`);
    // let the warm-up's deliveries drain so they do not count against the measured run
    const perEvent = store === 'sqlite-2dest' ? 2 : 1;
    for (let i = 0; i < 600 && upstream.seen.size < warm['2xx'] * perEvent; i++) await new Promise((r) => setTimeout(r, 100));
    upstream.lags.length = 0;
    const before = cpuMs(gh.pid);
    const measured = await load(gh.url, Number(args.duration), `${store}${round}`);
    const ok = measured['2xx'];
    const deadline = performance.now() + 120_000;
    while (upstream.lags.length < ok * perEvent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const cpu = cpuMs(gh.pid) - before; // intake and delivery of the measured events
    return {
      store,
      reqs: Math.round(ok / Number(args.duration)),
      p50: measured.latency.p50,
      p99: measured.latency.p99,
      errors: measured.non2xx + measured.errors,
      cpuUs: Math.round((cpu * 1000) / ok),
      delivered: `${upstream.lags.length}/${ok * perEvent}`,
      lag50: Math.round(pct(upstream.lags, 50)),
      lag99: Math.round(pct(upstream.lags, 99)),
      dupes: store === 'proxy' ? '-' : upstream.dupes(),
    };
  } finally {
    gh.stop();
    redis?.stop();
    upstream.close();
  }
}

const scenarios = args.scenarios.split(',');
const runs = new Map(scenarios.map((s) => [s, []]));
for (let round = 0; round < Number(args.rounds); round++) {
  // interleaved, order rotated each round (docs/performance.md)
  const order = scenarios.map((_, i) => scenarios[(i + round) % scenarios.length]);
  for (const store of order) runs.get(store).push(await measure(store, round));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const table = [...runs].map(([store, rs]) => ({
  scenario: store === 'proxy' ? 'proxy (no webhook)' : `webhook ${store}`,
  'intake req/s': median(rs.map((r) => r.reqs)),
  'intake p50 ms': median(rs.map((r) => r.p50)),
  'intake p99 ms': median(rs.map((r) => r.p99)),
  'gatehouse CPU µs/event': median(rs.map((r) => r.cpuUs)),
  'lag p50 ms': median(rs.map((r) => r.lag50)),
  'lag p99 ms': median(rs.map((r) => r.lag99)),
  'non-2xx': rs.reduce((a, r) => a + r.errors, 0),
  delivered: rs.map((r) => r.delivered).join(' '),
  'delivered twice': rs.map((r) => r.dupes).join(' '),
}));
console.log(`connections ${args.connections}, ${args.rounds} rounds of ${args.duration}s (medians), 2 KiB Stripe events; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
console.table(table);
