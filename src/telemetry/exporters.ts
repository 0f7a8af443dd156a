import { Metadata } from '@grpc/grpc-js';
import { OTLPMetricExporter as GrpcMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtobufMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import type { OtlpTarget } from './otel-env.js';

interface HttpOptions {
  url?: string;
  headers?: Record<string, string>;
}
interface GrpcOptions {
  url?: string;
  metadata?: Metadata;
}
/** One signal's exporter class per protocol. */
interface ExporterClasses<T> {
  readonly 'http/protobuf': new (options: HttpOptions) => T;
  readonly 'http/json': new (options: HttpOptions) => T;
  readonly grpc: new (options: GrpcOptions) => T;
}

const SPAN_EXPORTERS: ExporterClasses<SpanExporter> = { 'http/protobuf': ProtobufTraceExporter, 'http/json': JsonTraceExporter, grpc: GrpcTraceExporter };
const METRIC_EXPORTERS: ExporterClasses<PushMetricExporter> = { 'http/protobuf': ProtobufMetricExporter, 'http/json': JsonMetricExporter, grpc: GrpcMetricExporter };

/**
 * The OTLP exporter of a protocol (OTEL_EXPORTER_OTLP_PROTOCOL): `http/protobuf` and `http/json`
 * over OTLP/HTTP, `grpc` over OTLP/gRPC. Only what the YAML says is passed in; the exporter
 * reads the rest (endpoint, headers, timeout, compression, certificates) from the OTEL_* variables
 * itself, and merges its headers under the YAML's. Build inside `withOtelEnv`.
 */
export const createSpanExporter = (target: OtlpTarget): SpanExporter => createExporter(SPAN_EXPORTERS, target);

/** The same for metrics (`telemetry.metrics.otlp`, OTEL_METRICS_EXPORTER=otlp). */
export const createMetricExporter = (target: OtlpTarget): PushMetricExporter => createExporter(METRIC_EXPORTERS, target);

function createExporter<T>(classes: ExporterClasses<T>, { protocol, url, headers: secrets }: OtlpTarget): T {
  const headers = reveal(secrets);
  const where = url === undefined ? {} : { url };
  if (protocol === 'grpc') return new classes.grpc({ ...where, ...(headers ? { metadata: metadataOf(headers) } : {}) });
  return new classes[protocol]({ ...where, ...(headers ? { headers } : {}) });
}

/** The YAML's header secrets, unwrapped only here, where they go on the wire to the collector. */
function reveal(headers: OtlpTarget['headers']): Record<string, string> | undefined {
  return headers === undefined ? undefined : Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.reveal()]));
}

function metadataOf(headers: Record<string, string>): Metadata {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  return metadata;
}
