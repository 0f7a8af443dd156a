import { createRequire } from 'node:module';
import type { Metadata } from '@grpc/grpc-js';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { ProtobufTraceSerializer, TraceExporterMetricsHelper, type ISerializer, type IExportTraceServiceResponse } from '@opentelemetry/otlp-transformer';
import type { Resource } from '@opentelemetry/resources';
import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { createTraceEncoder } from './otlp-encoder.js';
import type { OtlpTarget } from './otel-env.js';

/**
 * The exporter packages a config does not use are not loaded: gRPC (@grpc/grpc-js), the JSON
 * exporters and the metric exporters cost a sidecar about 10 MB of resident memory together and
 * most deployments use one protocol for traces only. They are CommonJS, so a synchronous require.
 */
const load = createRequire(import.meta.url);
const grpcBase = () => load('@opentelemetry/otlp-grpc-exporter-base') as typeof import('@opentelemetry/otlp-grpc-exporter-base');
const grpcMetadata = () => (load('@grpc/grpc-js') as typeof import('@grpc/grpc-js')).Metadata;

interface HttpOptions {
  url?: string;
  headers?: Record<string, string>;
}
interface GrpcOptions {
  url?: string;
  metadata?: Metadata;
}
/** One signal's exporter class per protocol, loaded when first used. */
interface ExporterClasses<T> {
  readonly 'http/protobuf': () => new (options: HttpOptions) => T;
  readonly 'http/json': () => new (options: HttpOptions) => T;
  readonly grpc: () => new (options: GrpcOptions) => T;
}

// the one span exporter class used: protobuf and gRPC go through gatehouse's encoder (createProtobufSpanExporter)
const jsonSpanExporter = () => (load('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter;
const METRIC_EXPORTERS: ExporterClasses<PushMetricExporter> = {
  'http/protobuf': () => (load('@opentelemetry/exporter-metrics-otlp-proto') as typeof import('@opentelemetry/exporter-metrics-otlp-proto')).OTLPMetricExporter,
  'http/json': () => (load('@opentelemetry/exporter-metrics-otlp-http') as typeof import('@opentelemetry/exporter-metrics-otlp-http')).OTLPMetricExporter,
  grpc: () => (load('@opentelemetry/exporter-metrics-otlp-grpc') as typeof import('@opentelemetry/exporter-metrics-otlp-grpc')).OTLPMetricExporter,
};

/**
 * The OTLP exporter of a protocol (OTEL_EXPORTER_OTLP_PROTOCOL): `http/protobuf` and `http/json`
 * over OTLP/HTTP, `grpc` over OTLP/gRPC. Only what the YAML says is passed in; the exporter
 * reads the rest (endpoint, headers, timeout, compression, certificates) from the OTEL_* variables
 * itself, and merges its headers under the YAML's. Build inside `withOtelEnv`.
 */
export function createSpanExporter(target: OtlpTarget, resource: Resource): SpanExporter {
  if (target.protocol === 'http/json') return new (jsonSpanExporter())(httpOptions(target));
  return createProtobufSpanExporter(target, resource);
}

/**
 * OTLP protobuf (http/protobuf, grpc) with gatehouse's encoder (otlp-encoder.ts) in place of the
 * transformer's serializer: the SDK's own export delegates, which read the same OTEL_EXPORTER_OTLP_*
 * variables, send, retry and decode the response as the SDK's exporter classes do.
 */
function createProtobufSpanExporter(target: OtlpTarget, resource: Resource): SpanExporter {
  const serializer: ISerializer<ReadableSpan[], IExportTraceServiceResponse> = {
    serializeRequest: createTraceEncoder(resource, { name: 'gatehouse' }) as (spans: readonly ReadableSpan[]) => Uint8Array,
    deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
  };
  const delegate =
    target.protocol === 'grpc'
      ? grpcBase().createOtlpGrpcExportDelegate(
          grpcBase().convertLegacyOtlpGrpcOptions(grpcOptions(target), 'TRACES'),
          serializer,
          'otlp_grpc_span_exporter',
          TraceExporterMetricsHelper,
          undefined,
          'TraceExportService',
          '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        )
      : createOtlpHttpExportDelegate(
          convertLegacyHttpOptions(httpOptions(target), 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' }),
          serializer,
          'otlp_http_span_exporter',
          TraceExporterMetricsHelper,
          undefined,
        );
  return new OTLPExporterBase(delegate);
}

/** The same for metrics (`telemetry.metrics.otlp`, OTEL_METRICS_EXPORTER=otlp). */
export const createMetricExporter = (target: OtlpTarget): PushMetricExporter => createExporter(METRIC_EXPORTERS, target);

function createExporter<T>(classes: ExporterClasses<T>, target: OtlpTarget): T {
  if (target.protocol === 'grpc') return new (classes.grpc())(grpcOptions(target));
  return new (classes[target.protocol]())(httpOptions(target));
}

/** What the YAML says of the collector, as the OTLP/HTTP exporters take it. */
function httpOptions({ url, headers }: OtlpTarget): HttpOptions {
  const revealed = reveal(headers);
  return { ...(url === undefined ? {} : { url }), ...(revealed ? { headers: revealed } : {}) };
}

/** The same for OTLP/gRPC: the headers as metadata. */
function grpcOptions({ url, headers }: OtlpTarget): GrpcOptions {
  const revealed = reveal(headers);
  return { ...(url === undefined ? {} : { url }), ...(revealed ? { metadata: metadataOf(revealed) } : {}) };
}

/** The YAML's header secrets, unwrapped only here, where they go on the wire to the collector. */
function reveal(headers: OtlpTarget['headers']): Record<string, string> | undefined {
  return headers === undefined ? undefined : Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.reveal()]));
}

function metadataOf(headers: Record<string, string>): Metadata {
  const metadata = new (grpcMetadata())();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  return metadata;
}
