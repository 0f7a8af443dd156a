import { SpanKind, type Tracer } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import { createSpanExporter } from './exporters.js';
import type { TraceSettings } from './otel-env.js';
import { createPropagation, type Propagation } from './propagation.js';

export interface Tracing extends Propagation {
  readonly tracer: Tracer;
  shutdown(): Promise<void>;
}

export { SpanKind };

/**
 * Tracing as the settings say (OTel SDK: TracerProvider, batch processor, OTLP and/or console
 * exporter), or undefined when it is off: then there are no span objects on the request path.
 * Build inside `withOtelEnv`: the OTLP exporter reads its OTEL_EXPORTER_OTLP_* variables.
 */
export function createTracing(settings: TraceSettings | undefined, resource: Resource): Tracing | undefined {
  if (settings === undefined) return undefined;
  const exporters: SpanExporter[] = settings.exporters.map((name) => (name === 'otlp' ? createSpanExporter(settings.otlp) : new ConsoleSpanExporter()));
  const provider = new TracerProvider({
    resource,
    sampler: createSampler(settings.sampler),
    spanProcessors: exporters.map((exporter) => new BatchSpanProcessor({ exporter, ...settings.batch })),
  });
  const propagation = createPropagation(settings.propagators);

  return {
    tracer: provider.getTracer('gatehouse'),
    extract: propagation.extract,
    inject: propagation.inject,
    traceContext: propagation.traceContext,
    fields: propagation.fields,
    shutdown: () => provider.shutdown(),
  };
}

function createSampler({ name, ratio }: TraceSettings['sampler']): Sampler {
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}
