#!/usr/bin/env node
// What a quota costs per request when it counts but never refuses, measured in-process: the
// route's quota stages (RateLimit-Policy, the decision, the RateLimit header) run on a fresh
// Exchange, against the same loop without them. CPU time of this process (process.cpuUsage) per
// request, medians of interleaved rounds. For the Redis store a local redis-server is started and
// requests are kept 50 in flight; its own CPU is not counted (in production it runs elsewhere),
// the client's (ioredis, the script call, the reply) is.
//
//   npm run build && taskset -c 1 node --max-semi-space-size=64 bench/quota-stage.mjs [--requests 200000] [--rounds 7]
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, Socket } from 'node:net';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { ConfigSchema } from '../dist/config/schema.js';
import { Exchange } from '../dist/proxy/exchange.js';
import { compileQuotas, compileRouteQuota } from '../dist/quota/quota.js';
import { systemClock } from '../dist/resilience/clock.js';
import { createStoreRegistry } from '../dist/stores/stores.js';

const { values: args } = parseArgs({ options: { requests: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '7' } } });
const N = Number(args.requests);
const ROUNDS = Number(args.rounds);
const IN_FLIGHT = 50;

async function freePort() {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const redisPort = await freePort();
const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
for (let i = 0; ; i++) {
  const up = await new Promise((resolve) => {
    const s = new Socket().once('error', () => resolve(false)).connect(redisPort, '127.0.0.1', () => (s.destroy(), resolve(true)));
  });
  if (up) break;
  if (i > 100) throw new Error('redis-server did not start');
  await new Promise((r) => setTimeout(r, 50));
}

const quota = (extra) => ({ limit: 1_000_000_000, per: '1s', ...extra });
const config = ConfigSchema.parse({
  version: 1,
  listeners: [{ name: 'in', address: '127.0.0.1:0' }],
  stores: { shared: { type: 'redis', url: `redis://127.0.0.1:${redisPort}` } },
  upstreams: { app: { endpoints: ['http://127.0.0.1:1'] } },
  routes: [
    { name: 'memory-global', listener: 'in', upstream: 'app', quota: [quota({})] },
    { name: 'memory-ip', listener: 'in', upstream: 'app', quota: [quota({ key: 'ip' })] },
    { name: 'memory-two', listener: 'in', upstream: 'app', quota: [quota({ key: 'ip' }), quota({ per: '1h' })] },
    { name: 'redis-global', listener: 'in', upstream: 'app', quota: [quota({ store: 'shared' })] },
  ],
});
const stores = createStoreRegistry(config, pino({ level: 'silent' }));
const observer = { route: () => ({ decision() {} }), queueDepth() {}, waited() {}, storeState() {}, upstreamPaused() {} };
const deps = { clock: systemClock, stores, observer };
const registry = compileQuotas(config, deps);
const routes = Object.fromEntries(config.routes.map((r) => [r.name, compileRouteQuota(r, registry, deps)]));
const client = stores.redis('shared');
if (client.status !== 'ready') await once(client, 'ready');

const req = { method: 'GET', rawHeaders: [], socket: {} };
const res = {};
const exchange = (i) => {
  const ex = new Exchange(req, res, 0);
  ex.clientIp = i & 1 ? '10.0.0.1' : '10.0.0.2';
  return ex;
};
const none = { announce: () => undefined, stage: () => undefined };

/** CPU µs per request of `count` requests through `q`'s stages, `inFlight` at a time. */
async function run(q, count, inFlight) {
  const t0 = process.cpuUsage();
  if (inFlight === 1) {
    for (let i = 0; i < count; i++) {
      const ex = exchange(i);
      q.announce(ex);
      if (q.stage(ex) !== undefined) throw new Error('refused');
    }
  } else {
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < count) {
          const ex = exchange(next++);
          q.announce(ex);
          if ((await q.stage(ex)) !== undefined) throw new Error('refused');
        }
      }),
    );
  }
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / count;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cases = [
  { name: 'memory store, key global', q: routes['memory-global'], n: N, inFlight: 1 },
  { name: 'memory store, key ip', q: routes['memory-ip'], n: N, inFlight: 1 },
  { name: 'memory store, ip + global limits', q: routes['memory-two'], n: N, inFlight: 1 },
  { name: 'redis store, key global', q: routes['redis-global'], n: Math.ceil(N / 10), inFlight: IN_FLIGHT, baseline: 'async' },
];
const asyncNone = { announce: () => undefined, stage: () => Promise.resolve(undefined) };
// warm-up
for (const c of cases) await run(c.q, Math.min(c.n, 20_000), c.inFlight);
const samples = new Map(cases.map((c) => [c.name, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const c of r % 2 ? [...cases].reverse() : cases) {
    const base = await run(c.baseline === 'async' ? asyncNone : none, c.n, c.inFlight);
    const withQuota = await run(c.q, c.n, c.inFlight);
    samples.get(c.name).push(withQuota - base);
  }
}
console.log(`quota stage cost, CPU µs per request (median of ${ROUNDS} rounds, ${N} requests; redis ${Math.ceil(N / 10)}, ${IN_FLIGHT} in flight)`);
for (const c of cases) console.log(`  ${c.name.padEnd(34)} ${median(samples.get(c.name)).toFixed(2)} µs`);
registry.close();
await stores.close();
redis.kill('SIGKILL');
