import { readdirSync } from 'node:fs';
import type { Meter, MeterProvider } from '@opentelemetry/api';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { METRICS } from '../core/names.js';

/**
 * Runtime metrics beside the HTTP ones (SPEC §8), all under the OTel semantic-convention names so
 * they reach Prometheus and OTLP alike:
 *
 * - the event loop, the V8 heap and GC from `@opentelemetry/instrumentation-runtime-node` (the
 *   OTel project's own, on the SDK line gatehouse uses): `nodejs.eventloop.delay.*` (min, max,
 *   mean, stddev, p50, p90, p99 since the previous collection), `nodejs.eventloop.utilization`,
 *   `nodejs.eventloop.time`, `v8js.memory.heap.*` per heap space, `v8js.gc.duration`,
 *   `v8js.resource.active`;
 * - the process here: `process.cpu.time`, `process.memory.usage` (resident set) and
 *   `process.unix.file_descriptor.count`. Three reads of Node's own counters; the OTel package
 *   that has the first two (`@opentelemetry/instrumentation-host-metrics`) needs Node 22.15, and
 *   its Node 20 predecessor is deprecated and none has the descriptor count.
 */
export function startRuntimeMetrics(provider: MeterProvider, meter: Meter): { stop(): void } {
  // Enabled on construction: an event-loop delay monitor sampling every 10 ms and a GC observer.
  const runtime = new RuntimeNodeInstrumentation({ monitoringPrecision: 10 });
  runtime.setMeterProvider(provider);

  meter
    .createObservableCounter(METRICS.processCpuTime, { unit: 's', description: 'CPU time the process used, by mode (user, system).' })
    .addCallback((result) => {
      const { user, system } = process.cpuUsage();
      result.observe(user / 1e6, { 'cpu.mode': 'user' });
      result.observe(system / 1e6, { 'cpu.mode': 'system' });
    });
  meter
    .createObservableUpDownCounter(METRICS.processMemoryUsage, { unit: 'By', description: 'Resident set size: physical memory the process holds.' })
    .addCallback((result) => result.observe(process.memoryUsage.rss()));
  if (countOpenFiles() !== undefined) {
    meter
      .createObservableUpDownCounter(METRICS.processOpenFiles, { unit: '{file_descriptor}', description: 'File descriptors the process has open (sockets included).' })
      .addCallback((result) => {
        const open = countOpenFiles();
        if (open !== undefined) result.observe(open);
      });
  }
  return { stop: () => runtime.disable() };
}

/** Open descriptors from /proc (Linux, as in the image); undefined where there is no /proc. */
function countOpenFiles(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length - 1; // less the one reading the directory
  } catch {
    return undefined;
  }
}
