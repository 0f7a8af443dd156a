import type { TelemetryConfig } from '../config/schema.js';
import { LOG_LEVELS, OTLP_PROTOCOLS } from '../config/values.js';
import type { Secret } from '../config/secret.js';

/**
 * The standard OpenTelemetry environment variables (SPEC §8), read once at start next to the
 * YAML's `telemetry` section: a key written in the YAML wins over its variable, a variable wins
 * over gatehouse's default. What the OpenTelemetry SDK reads itself (the exporters' endpoints,
 * headers, timeouts, compression and certificates; OTEL_RESOURCE_ATTRIBUTES and
 * OTEL_SERVICE_NAME in its resource detector) stays with the SDK, see `withOtelEnv`; the rest
 * (the SDK for Node leaves these to its NodeSDK, which gatehouse does not use) is read here.
 * Every value not understood is a warning naming its variable, then the default applies.
 */

export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];
export type TraceExporterName = 'otlp' | 'console';
export type PropagatorName = 'tracecontext' | 'baggage' | 'b3' | 'b3multi';
export type SamplerName =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';

/** Where a value came from, for the warnings and the start line. */
export interface OtlpTarget {
  readonly protocol: OtlpProtocol;
  /** From the YAML; undefined: the SDK reads OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)ENDPOINT or uses its default. */
  readonly url: string | undefined;
  /** From the YAML (secrets); the SDK adds OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)HEADERS. */
  readonly headers: Readonly<Record<string, Secret>> | undefined;
}

export interface TraceSettings {
  /** `otlp` and/or `console`; tracing is off (undefined settings) when none is chosen. */
  readonly exporters: readonly TraceExporterName[];
  readonly otlp: OtlpTarget;
  readonly sampler: { readonly name: SamplerName; readonly ratio: number };
  /** OTEL_BSP_*: the batch span processor. */
  readonly batch: {
    readonly scheduledDelayMillis: number;
    readonly exportTimeoutMillis: number;
    readonly maxQueueSize: number;
    readonly maxExportBatchSize: number;
  };
  /** OTEL_PROPAGATORS, in order; empty for `none`. */
  readonly propagators: readonly PropagatorName[];
}

export interface MetricSettings {
  readonly prometheus: boolean;
  readonly otlp: (OtlpTarget & { readonly intervalMs: number }) | undefined;
}

export interface OtelSettings {
  /** undefined: tracing off (OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none, or no endpoint known). */
  readonly traces: TraceSettings | undefined;
  readonly metrics: MetricSettings;
  readonly logLevel: LogLevel;
  /** The YAML's serviceName; the SDK's env detector reads OTEL_SERVICE_NAME. */
  readonly serviceName: string | undefined;
}

export type Warn = (variable: string, message: string) => void;

/** gatehouse's batch span processor defaults (a sidecar's spans should show within a second). */
const BATCH_DEFAULTS = { scheduledDelayMillis: 1000, exportTimeoutMillis: 30_000, maxQueueSize: 8192, maxExportBatchSize: 512 };
const METRIC_INTERVAL_MS = 15_000;

/**
 * Variables the SDK reads itself, or gatehouse reads here: any other OTEL_* variable gets a
 * warning, so a misspelt name (OTEL_TRACE_SAMPLER) is not silently without effect.
 */
const SIGNAL_VARIABLES = ['ENDPOINT', 'HEADERS', 'PROTOCOL', 'TIMEOUT', 'COMPRESSION', 'CERTIFICATE', 'CLIENT_KEY', 'CLIENT_CERTIFICATE', 'INSECURE'];
const KNOWN = new Set([
  'OTEL_SDK_DISABLED',
  'OTEL_SERVICE_NAME',
  'OTEL_RESOURCE_ATTRIBUTES',
  'OTEL_TRACES_EXPORTER',
  'OTEL_METRICS_EXPORTER',
  'OTEL_TRACES_SAMPLER',
  'OTEL_TRACES_SAMPLER_ARG',
  'OTEL_PROPAGATORS',
  'OTEL_BSP_SCHEDULE_DELAY',
  'OTEL_BSP_EXPORT_TIMEOUT',
  'OTEL_BSP_MAX_QUEUE_SIZE',
  'OTEL_BSP_MAX_EXPORT_BATCH_SIZE',
  'OTEL_METRIC_EXPORT_INTERVAL',
  'OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE',
  ...['', 'TRACES_', 'METRICS_'].flatMap((signal) => SIGNAL_VARIABLES.map((v) => `OTEL_EXPORTER_OTLP_${signal}${v}`)),
]);

const SAMPLERS: readonly SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];
const PROPAGATORS: readonly (PropagatorName | 'none')[] = ['tracecontext', 'baggage', 'b3', 'b3multi', 'none'];

export function readOtelSettings(cfg: TelemetryConfig, env: NodeJS.ProcessEnv, warn: Warn): OtelSettings {
  const get = (name: string) => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  for (const name of Object.keys(env)) {
    if (name.startsWith('OTEL_') && !KNOWN.has(name) && get(name) !== undefined) warn(name, `${name} is not used by gatehouse`);
  }
  checkResourceAttributes(get('OTEL_RESOURCE_ATTRIBUTES'), warn);

  const disabled = readBoolean(get('OTEL_SDK_DISABLED'), 'OTEL_SDK_DISABLED', warn);
  return {
    traces: disabled ? undefined : readTraces(cfg, get, warn),
    metrics: readMetrics(cfg, get, warn),
    logLevel: cfg.logLevel ?? oneOf(get('GATEHOUSE_LOG_LEVEL')?.toLowerCase(), LOG_LEVELS, 'GATEHOUSE_LOG_LEVEL', 'info', warn),
    serviceName: cfg.serviceName,
  };
}

type Get = (name: string) => string | undefined;

function readTraces(cfg: TelemetryConfig, get: Get, warn: Warn): TraceSettings | undefined {
  const yaml = cfg.traces;
  const listed = readList(get('OTEL_TRACES_EXPORTER'), ['otlp', 'console', 'none'] as const, 'OTEL_TRACES_EXPORTER', warn);
  let exporters: TraceExporterName[];
  if (yaml.endpoint !== undefined) {
    // the YAML names a collector: spans go there whatever the variable says
    if (listed !== undefined && !listed.includes('otlp')) {
      warn('OTEL_TRACES_EXPORTER', `OTEL_TRACES_EXPORTER=${get('OTEL_TRACES_EXPORTER')} is overridden by telemetry.traces.endpoint (the YAML wins); OTEL_SDK_DISABLED=true turns tracing off`);
    }
    exporters = ['otlp', ...(listed?.includes('console') ? (['console'] as const) : [])];
  } else if (listed !== undefined) {
    exporters = listed.includes('none') ? [] : listed.filter((e): e is TraceExporterName => e !== 'none');
  } else {
    // gatehouse's default: tracing is on once an endpoint is known, and costs nothing before
    exporters = get('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') !== undefined || get('OTEL_EXPORTER_OTLP_ENDPOINT') !== undefined ? ['otlp'] : [];
  }
  if (exporters.length === 0) return undefined;

  return {
    exporters,
    otlp: { protocol: readProtocol(yaml.protocol, 'TRACES', get, warn), url: yaml.endpoint, headers: yaml.headers },
    sampler: readSampler(yaml.sampleRatio, get, warn),
    batch: {
      scheduledDelayMillis: readCount(get, 'OTEL_BSP_SCHEDULE_DELAY', BATCH_DEFAULTS.scheduledDelayMillis, 0, warn),
      exportTimeoutMillis: readCount(get, 'OTEL_BSP_EXPORT_TIMEOUT', BATCH_DEFAULTS.exportTimeoutMillis, 1, warn),
      maxQueueSize: readCount(get, 'OTEL_BSP_MAX_QUEUE_SIZE', BATCH_DEFAULTS.maxQueueSize, 1, warn),
      maxExportBatchSize: readCount(get, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', BATCH_DEFAULTS.maxExportBatchSize, 1, warn),
    },
    propagators: readPropagators(get, warn),
  };
}

function readMetrics(cfg: TelemetryConfig, get: Get, warn: Warn): MetricSettings {
  const yaml = cfg.metrics;
  const listed = readList(get('OTEL_METRICS_EXPORTER'), ['prometheus', 'otlp', 'none'] as const, 'OTEL_METRICS_EXPORTER', warn);
  const none = listed?.includes('none') ?? false;
  const prometheus = yaml.prometheus ?? (listed === undefined ? true : !none && listed.includes('prometheus'));
  const otlpOn = yaml.otlp !== undefined || (listed !== undefined && !none && listed.includes('otlp'));
  return {
    prometheus,
    otlp: otlpOn
      ? {
          protocol: readProtocol(yaml.otlp?.protocol, 'METRICS', get, warn),
          url: yaml.otlp?.endpoint,
          headers: yaml.otlp?.headers,
          intervalMs: yaml.otlp?.interval ?? readCount(get, 'OTEL_METRIC_EXPORT_INTERVAL', METRIC_INTERVAL_MS, 1, warn),
        }
      : undefined,
  };
}

/** The signal's own variable first, then the general one; the specification's default is http/protobuf. */
function readProtocol(yaml: OtlpProtocol | undefined, signal: 'TRACES' | 'METRICS', get: Get, warn: Warn): OtlpProtocol {
  if (yaml !== undefined) return yaml;
  const specific = `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`;
  const name = get(specific) !== undefined ? specific : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  return oneOf(get(name), OTLP_PROTOCOLS, name, 'http/protobuf', warn);
}

function readSampler(yamlRatio: number | undefined, get: Get, warn: Warn): TraceSettings['sampler'] {
  // the YAML's sampleRatio: a share of new traces, a client's sampled flag wins
  if (yamlRatio !== undefined) return { name: 'parentbased_traceidratio', ratio: yamlRatio };
  const name = oneOf(get('OTEL_TRACES_SAMPLER')?.toLowerCase(), SAMPLERS, 'OTEL_TRACES_SAMPLER', 'parentbased_always_on', warn);
  const arg = get('OTEL_TRACES_SAMPLER_ARG');
  let ratio = 1;
  if (arg !== undefined && name.endsWith('traceidratio')) {
    const n = Number(arg);
    if (Number.isFinite(n) && n >= 0 && n <= 1) ratio = n;
    else warn('OTEL_TRACES_SAMPLER_ARG', `OTEL_TRACES_SAMPLER_ARG=${arg} is not a ratio between 0 and 1; sampling with 1`);
  } else if (arg !== undefined) {
    warn('OTEL_TRACES_SAMPLER_ARG', `OTEL_TRACES_SAMPLER_ARG is ignored: the sampler ${name} takes no argument (traceidratio and parentbased_traceidratio do)`);
  }
  return { name, ratio };
}

function readPropagators(get: Get, warn: Warn): PropagatorName[] {
  const listed = readList(get('OTEL_PROPAGATORS'), PROPAGATORS, 'OTEL_PROPAGATORS', warn) ?? ['tracecontext', 'baggage'];
  if (listed.includes('none')) return [];
  return [...new Set(listed.filter((p): p is PropagatorName => p !== 'none'))];
}

/** A comma-separated list; unknown entries are dropped with a warning. undefined when unset (or nothing valid). */
function readList<T extends string>(raw: string | undefined, known: readonly T[], variable: string, warn: Warn): T[] | undefined {
  if (raw === undefined) return undefined;
  const out: T[] = [];
  for (const item of raw.split(',')) {
    const v = item.trim().toLowerCase();
    if (v === '') continue;
    if ((known as readonly string[]).includes(v)) out.push(v as T);
    else warn(variable, `${variable}: '${v}' is not supported (gatehouse knows ${known.join(', ')}); ignored`);
  }
  return out.length === 0 ? undefined : out;
}

function oneOf<T extends string>(raw: string | undefined, known: readonly T[], variable: string, fallback: T, warn: Warn): T {
  if (raw === undefined) return fallback;
  if ((known as readonly string[]).includes(raw)) return raw as T;
  warn(variable, `${variable}=${raw} is not one of ${known.join(', ')}; using ${fallback}`);
  return fallback;
}

function readCount(get: Get, variable: string, fallback: number, min: number, warn: Warn): number {
  const raw = get(variable);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (Number.isInteger(n) && n >= min) return n;
  warn(variable, `${variable}=${raw} is not an integer >= ${min}; using ${fallback}`);
  return fallback;
}

function readBoolean(raw: string | undefined, variable: string, warn: Warn): boolean {
  if (raw === undefined) return false;
  const v = raw.toLowerCase();
  if (v === 'true') return true;
  if (v !== 'false') warn(variable, `${variable}=${raw} is neither true nor false; using false`);
  return false;
}

/**
 * The SDK's env detector drops a malformed OTEL_RESOURCE_ATTRIBUTES whole, with a debug line only:
 * the same rules (key=value pairs, ',' and '=' percent-encoded) checked here so it is a warning.
 */
function checkResourceAttributes(raw: string | undefined, warn: Warn): void {
  if (raw === undefined) return;
  for (const pair of raw.split(',')) {
    if (pair.trim() === '') continue;
    const parts = pair.split('=');
    let ok = parts.length === 2 && parts[0]!.trim() !== '';
    if (ok) {
      try {
        decodeURIComponent(parts[0]!);
        decodeURIComponent(parts[1]!);
      } catch {
        ok = false;
      }
    }
    if (!ok) {
      warn('OTEL_RESOURCE_ATTRIBUTES', `OTEL_RESOURCE_ATTRIBUTES is not a list of key=value pairs ('${pair.trim()}'); none of its attributes are used`);
      return;
    }
  }
}

/**
 * Runs `build` (synchronously) with process.env showing exactly the OTEL_* variables of `env`.
 * The OpenTelemetry SDK reads its variables from process.env when an exporter or detector is
 * built; gatehouse takes its environment as a parameter (a test starts several in one process,
 * each with its own). Nothing else runs meanwhile, and process.env is restored before returning.
 */
export function withOtelEnv<T>(env: NodeJS.ProcessEnv, build: () => T): T {
  const target = process.env;
  if (env === target) return build();
  const saved = Object.entries(target).filter(([k]) => k.startsWith('OTEL_'));
  for (const [k] of saved) delete target[k];
  for (const [k, v] of Object.entries(env)) if (k.startsWith('OTEL_') && v !== undefined) target[k] = v;
  try {
    return build();
  } finally {
    for (const k of Object.keys(target)) if (k.startsWith('OTEL_')) delete target[k];
    for (const [k, v] of saved) target[k] = v;
  }
}
