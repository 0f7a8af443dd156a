import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { PerformanceObserver } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { sample, scrape } from '../helpers/metrics.js';
import { startUpstream } from '../helpers/upstream.js';
import { RUNTIME_METRICS } from '../../src/core/names.js';

/** Every sample of `name` in the text, summed over its label sets. */
function sum(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(\S+)$/.exec(line);
    if (m?.[1] === name) total += Number(m[2]);
  }
  return total;
}

const busyFor = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end); // blocks the event loop, as a CPU-heavy request would
};

/**
 * Allocates short-lived arrays until the process has reported a garbage collection. How much
 * that takes depends on the young generation's size, which differs between Node versions.
 */
async function collectGarbage(): Promise<void> {
  let seen = false;
  const observer = new PerformanceObserver(() => (seen = true));
  observer.observe({ entryTypes: ['gc'] });
  try {
    for (let round = 0; round < 200 && !seen; round++) {
      let garbage: number[][] = [];
      for (let i = 0; i < 200_000; i++) garbage.push([i, i]);
      garbage = [];
      await new Promise((r) => setImmediate(r)); // GC entries are delivered on a later turn
    }
  } finally {
    observer.disconnect();
  }
  expect(seen).toBe(true);
}

describe('runtime metrics', () => {
  // gatehouse runs in this test's process, so its runtime metrics describe this process.
  it('reports process CPU, resident memory, heap and open file descriptors as this process measures them', async () => {
    const up = await startUpstream();
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const cpuBefore = process.cpuUsage();
    const first = await scrape(g.admin('/metrics'));
    const cpuAfter = process.cpuUsage();
    const user = sample(first, 'process_cpu_time_seconds_total', { cpu_mode: 'user' })!;
    expect(user).toBeGreaterThanOrEqual(cpuBefore.user / 1e6);
    expect(user).toBeLessThanOrEqual(cpuAfter.user / 1e6);
    expect(sample(first, 'process_cpu_time_seconds_total', { cpu_mode: 'system' })).toBeGreaterThan(0);
    expect(first).toMatch(/^# TYPE process_cpu_time_seconds_total counter$/m);

    const rss = sample(first, 'process_memory_usage_bytes')!;
    expect(rss / process.memoryUsage.rss()).toBeGreaterThan(0.5);
    expect(rss / process.memoryUsage.rss()).toBeLessThan(2);
    const heapUsed = sum(first, 'v8js_memory_heap_used_bytes');
    expect(heapUsed / process.memoryUsage().heapUsed).toBeGreaterThan(0.5);
    expect(heapUsed / process.memoryUsage().heapUsed).toBeLessThan(2);
    expect(sample(first, 'v8js_memory_heap_space_size_bytes', { v8js_heap_space_name: 'old_space' })).toBeGreaterThan(0);

    // 40 connections held open: 80 more descriptors in this process (both ends of each)
    const fdsBefore = sample(first, 'process_unix_file_descriptor_count')!;
    expect(fdsBefore).toBeGreaterThan(0);
    const port = Number(new URL(g.url('in')).port);
    const sockets: Socket[] = [];
    onCleanup(() => sockets.forEach((s) => s.destroy()));
    for (let i = 0; i < 40; i++) {
      const s = connect(port, '127.0.0.1');
      sockets.push(s);
      await once(s, 'connect');
    }
    const fdsAfter = sample(await scrape(g.admin('/metrics')), 'process_unix_file_descriptor_count')!;
    expect(fdsAfter - fdsBefore).toBeGreaterThanOrEqual(40);
  });

  it('settles the resource before serving: target_info has host.id and no warning is logged', async () => {
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [http://127.0.0.1:9] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const text = await scrape(g.admin('/metrics'));
    // the host detector reads host.id asynchronously (/etc/machine-id); read before it settled,
    // the SDK warned "Accessing resource attributes before async attributes settled" on every scrape
    expect(text).toMatch(/^target_info\{[^}]*host_name="/m);
    expect(g.log.all).not.toMatch(/async attributes/);
  });

  it('reports event-loop delay and utilisation: a 300 ms block shows in both', async () => {
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [http://127.0.0.1:1] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    await scrape(g.admin('/metrics')); // the delay histogram and the utilisation restart at each collection
    await new Promise((r) => setTimeout(r, 100));
    const quiet = await scrape(g.admin('/metrics'));
    // an idle loop: the delay is about the 10 ms sampling interval it includes
    expect(sample(quiet, 'nodejs_eventloop_delay_p50_seconds')).toBeLessThan(0.1);
    expect(sample(quiet, 'nodejs_eventloop_utilization_ratio')).toBeLessThan(0.9);

    // a collection resets the delay histogram, and the first interval after a reset is not
    // recorded: let the 10 ms monitor tick a few times before the block
    await new Promise((r) => setTimeout(r, 50));
    busyFor(300);
    await collectGarbage(); // the GC duration histogram appears with its first collection
    await new Promise((r) => setTimeout(r, 100)); // a few samples after the block (at least 5 are needed)
    const blocked = await scrape(g.admin('/metrics'));
    // every instrument names.ts lists for the runtime instrumentation (what the docs show) is there
    for (const name of RUNTIME_METRICS) expect(blocked).toMatch(new RegExp(`^# TYPE ${name.replace(/\./g, '_')}(_seconds|_bytes|_ratio)?(_total)? `, 'm'));
    expect(sample(blocked, 'nodejs_eventloop_delay_max_seconds')).toBeGreaterThanOrEqual(0.29);
    expect(sample(blocked, 'nodejs_eventloop_delay_p99_seconds')).toBeGreaterThanOrEqual(0.29);
    const elu = sample(blocked, 'nodejs_eventloop_utilization_ratio')!;
    expect(elu).toBeGreaterThan(0.5);
    expect(elu).toBeLessThanOrEqual(1);
    expect(sample(blocked, 'nodejs_eventloop_time_seconds_total', { nodejs_eventloop_state: 'active' })).toBeGreaterThan(0.29);
  });
});
