import { ROOT_CONTEXT, SpanKind, trace, type Context, type Span, type TextMapGetter, type TextMapSetter, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import type { Resource } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace';
import type { TelemetryConfig } from '../config/schema.js';

export interface Tracing {
  readonly tracer: Tracer;
  /** The parent context from the client's traceparent/tracestate (ROOT_CONTEXT when none). */
  extract(traceparent: string | undefined, tracestate: string | undefined): Context;
  /** Appends the span's traceparent (and tracestate) to a flat header list. */
  inject(span: Span, out: string[]): void;
  shutdown(): Promise<void>;
}

export { SpanKind };

const propagator = new W3CTraceContextPropagator();

interface Carrier {
  traceparent: string | undefined;
  tracestate: string | undefined;
}
const getter: TextMapGetter<Carrier> = {
  keys: () => ['traceparent', 'tracestate'],
  get: (c, key) => (key === 'traceparent' ? c.traceparent : key === 'tracestate' ? c.tracestate : undefined),
};
const setter: TextMapSetter<string[]> = { set: (out, key, value) => void out.push(key, value) };

/**
 * OTLP/HTTP tracing, or undefined when off: no endpoint in the YAML or the OTEL_* variables, or
 * OTEL_SDK_DISABLED=true. Off means no span objects at all on the request path.
 */
export function createTracing(cfg: TelemetryConfig, env: NodeJS.ProcessEnv, resource: Resource): Tracing | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined;
  const endpoint =
    cfg.traces.endpoint ??
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces` : undefined);
  if (!endpoint) return undefined;

  const headers = cfg.traces.headers ? Object.fromEntries(Object.entries(cfg.traces.headers).map(([k, v]) => [k, v.reveal()])) : undefined;
  const exporter = new OTLPTraceExporter({ url: endpoint, ...(headers ? { headers } : {}) });
  const provider = new TracerProvider({
    resource,
    sampler: samplerFor(cfg.traces.sampleRatio, env),
    spanProcessors: [new BatchSpanProcessor({ exporter, maxQueueSize: 8192, maxExportBatchSize: 512, scheduledDelayMillis: 1000 })],
  });
  const tracer = provider.getTracer('gatehouse');

  return {
    tracer,
    extract(traceparent, tracestate) {
      if (traceparent === undefined) return ROOT_CONTEXT;
      return propagator.extract(ROOT_CONTEXT, { traceparent, tracestate }, getter);
    },
    inject(span, out) {
      propagator.inject(trace.setSpan(ROOT_CONTEXT, span), out, setter);
    },
    shutdown: () => provider.shutdown(),
  };
}

/** The YAML's sampleRatio wins; else OTEL_TRACES_SAMPLER(_ARG); else parent-based always-on. */
function samplerFor(ratio: number | undefined, env: NodeJS.ProcessEnv): Sampler {
  if (ratio !== undefined) return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG ?? '1');
  const argRatio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1;
  switch (env.OTEL_TRACES_SAMPLER?.trim().toLowerCase()) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(argRatio);
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(argRatio) });
    case 'parentbased_always_on':
    case undefined:
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}
