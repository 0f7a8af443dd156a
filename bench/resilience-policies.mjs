#!/usr/bin/env node
// What the resilience policies cost per request when configured but not triggered, measured
// in-process: a route's send chain (deadline only, as on a plain route) against the same chain
// with retry (+perTryTimeout, budget), a circuit breaker with both triggers (its sliding window
// is updated on every request) and a bulkhead, around an attempt that answers 200 at once.
// CPU time (process.cpuUsage) per request, medians of interleaved rounds: it isolates the
// policies' own work, which a whole-proxy run on a busy 2-core machine cannot resolve.
//
//   npm run build && taskset -c 1 node --max-semi-space-size=64 bench/resilience-policies.mjs [--requests 200000] [--rounds 7]
import { parseArgs } from 'node:util';
import { ConfigSchema } from '../dist/config/schema.js';
import { Exchange } from '../dist/proxy/exchange.js';
import { compose } from '../dist/proxy/send.js';
import { createBreaker } from '../dist/resilience/breaker.js';
import { createBulkhead } from '../dist/resilience/bulkhead.js';
import { systemClock } from '../dist/resilience/clock.js';
import { deadline } from '../dist/resilience/deadline.js';
import { compileResilience } from '../dist/resilience/policies.js';

const { values: args } = parseArgs({ options: { requests: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '7' } } });
const N = Number(args.requests);
const ROUNDS = Number(args.rounds);

const config = ConfigSchema.parse({
  version: 1,
  listeners: [{ name: 'in', address: '127.0.0.1:0' }],
  upstreams: { app: { endpoints: ['http://127.0.0.1:1'] } },
  routes: [{ name: 'r', listener: 'in', upstream: 'app', retry: { attempts: 3, perTryTimeout: '10s', budget: 0.2 } }],
});
const observer = { retry() {}, retrySkipped() {}, breakerTransition() {} };
const breakerConfig = { consecutiveFailures: 5, failureRatio: 0.5, minRequests: 20, windowMs: 30_000, openForMs: 30_000, halfOpenRequests: 1 };
const upstream = {
  name: 'app',
  inFlight: 0,
  retryAttemptsInFlight: 0,
  retriesInFlight: 0,
  breaker: createBreaker('app', breakerConfig, systemClock, observer),
  bulkhead: createBulkhead(1000),
};
const OK = { statusCode: 200, rawHeaders: [], committed: true };
// the attempt as forward.ts does it: count, offer the answer to the retry filter, commit
const attempt = (ex) => {
  ex.attempts++;
  if (ex.retryable !== undefined) ex.retryable(ex, 200, []);
  return Promise.resolve(OK);
};
const sends = {
  plain: compose([deadline(30_000)], attempt),
  resilience: compose([deadline(30_000), ...compileResilience(config.routes[0], upstream, { clock: systemClock, rand: Math.random, observer })], attempt),
};
const req = { method: 'GET', rawHeaders: ['host', 'shop.example'] };
const res = { headersSent: false };

async function run(send, n) {
  for (let i = 0; i < n; i++) await send(new Exchange(req, res, 0));
}

for (const send of Object.values(sends)) await run(send, N); // warm-up
const ns = { plain: [], resilience: [] };
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? ['plain', 'resilience'] : ['resilience', 'plain'];
  for (const name of order) {
    const before = process.cpuUsage();
    await run(sends[name], N);
    const used = process.cpuUsage(before);
    ns[name].push(((used.user + used.system) * 1000) / N);
  }
}
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const plain = median(ns.plain);
const full = median(ns.resilience);
console.log(`deadline only (a plain route)              ${plain.toFixed(0).padStart(6)} ns/request`);
console.log(`+ retry, breaker, bulkhead, not triggered  ${full.toFixed(0).padStart(6)} ns/request`);
console.log(`added per request                          ${(full - plain).toFixed(0).padStart(6)} ns`);
