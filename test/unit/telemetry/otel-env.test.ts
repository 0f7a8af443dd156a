import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../../src/config/load.js';
import { createRepeatLimiter } from '../../../src/telemetry/diagnostics.js';
import { readOtelSettings, withOtelEnv } from '../../../src/telemetry/otel-env.js';

const telemetry = (yaml = '') => loadConfigText(`version: 1\nlisteners: [{ name: in, address: 127.0.0.1:0 }]\n${yaml}`, 'gatehouse.yaml').config.telemetry;

function read(env: NodeJS.ProcessEnv, yaml = '') {
  const warnings: string[] = [];
  const settings = readOtelSettings(telemetry(yaml), env, (variable, message) => warnings.push(`${variable}: ${message}`));
  return { settings, warnings };
}

describe('readOtelSettings', () => {
  it('keeps tracing off until an endpoint or an exporter is named, and uses the documented defaults', () => {
    const { settings, warnings } = read({});
    expect(settings.traces).toBeUndefined();
    expect(settings.metrics).toEqual({ prometheus: true, otlp: undefined });
    expect(settings.logLevel).toBe('info');
    expect(warnings).toEqual([]);

    const on = read({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).settings.traces!;
    expect(on).toMatchObject({
      exporters: ['otlp'],
      otlp: { protocol: 'http/protobuf', url: undefined },
      sampler: { name: 'parentbased_always_on', ratio: 1 },
      batch: { scheduledDelayMillis: 1000, exportTimeoutMillis: 30_000, maxQueueSize: 8192, maxExportBatchSize: 512 },
      propagators: ['tracecontext', 'baggage'],
    });
  });

  it('lets the YAML sampleRatio win over OTEL_TRACES_SAMPLER', () => {
    const { settings } = read({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'always_off' }, 'telemetry: { traces: { sampleRatio: 0.25 } }');
    expect(settings.traces!.sampler).toEqual({ name: 'parentbased_traceidratio', ratio: 0.25 });
  });

  it('warns about OTEL_TRACES_SAMPLER_ARG given to a sampler that takes none', () => {
    const { warnings } = read({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER_ARG: '0.1' });
    expect(warnings).toEqual([
      'OTEL_TRACES_SAMPLER_ARG: OTEL_TRACES_SAMPLER_ARG is ignored: the sampler parentbased_always_on takes no argument (traceidratio and parentbased_traceidratio do)',
    ]);
  });

  it('turns metrics exporters on and off with OTEL_METRICS_EXPORTER, and the YAML wins', () => {
    expect(read({ OTEL_METRICS_EXPORTER: 'otlp' }).settings.metrics).toEqual({
      prometheus: false,
      otlp: { protocol: 'http/protobuf', url: undefined, headers: undefined, intervalMs: 15_000 },
    });
    expect(read({ OTEL_METRICS_EXPORTER: 'prometheus,otlp', OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'grpc', OTEL_METRIC_EXPORT_INTERVAL: '5000' }).settings.metrics).toMatchObject({
      prometheus: true,
      otlp: { protocol: 'grpc', intervalMs: 5000 },
    });
    expect(read({ OTEL_METRICS_EXPORTER: 'none' }, 'telemetry: { metrics: { otlp: { endpoint: "http://c:4318/v1/metrics" } } }').settings.metrics).toMatchObject({
      prometheus: false,
      otlp: { url: 'http://c:4318/v1/metrics', intervalMs: 15_000 },
    });
    const { warnings } = read({ OTEL_METRICS_EXPORTER: 'console' });
    expect(warnings).toEqual(["OTEL_METRICS_EXPORTER: OTEL_METRICS_EXPORTER: 'console' is not supported (gatehouse knows prometheus, otlp, none); ignored"]);
  });

  it('reads the propagators in order, drops duplicates, and none means none', () => {
    expect(read({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_PROPAGATORS: 'b3multi, tracecontext,b3multi' }).settings.traces!.propagators).toEqual(['b3multi', 'tracecontext']);
    expect(read({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_PROPAGATORS: 'none' }).settings.traces!.propagators).toEqual([]);
  });
});

describe('withOtelEnv', () => {
  it('shows exactly the given OTEL_* variables while building, and restores process.env', () => {
    const before = { ...process.env };
    process.env.OTEL_FROM_OUTSIDE = 'x';
    try {
      const seen = withOtelEnv({ OTEL_SERVICE_NAME: 'inside', PATH: '/nowhere' }, () => ({
        name: process.env.OTEL_SERVICE_NAME,
        outside: process.env.OTEL_FROM_OUTSIDE,
        path: process.env.PATH,
      }));
      expect(seen).toEqual({ name: 'inside', outside: undefined, path: before.PATH });
      expect(process.env.OTEL_SERVICE_NAME).toBe(before.OTEL_SERVICE_NAME);
      expect(process.env.OTEL_FROM_OUTSIDE).toBe('x');
    } finally {
      delete process.env.OTEL_FROM_OUTSIDE;
    }
  });
});

describe('createRepeatLimiter', () => {
  it('lets a key through once a window and counts what it held back', () => {
    let now = 0;
    const allow = createRepeatLimiter(60_000, () => now);
    expect(allow('export')).toBe(0);
    expect(allow('export')).toBeUndefined();
    expect(allow('other')).toBe(0);
    now = 30_000;
    expect(allow('export')).toBeUndefined();
    now = 60_000;
    expect(allow('export')).toBe(2);
    expect(allow('export')).toBeUndefined();
  });
});
