import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { onCleanup } from './cleanup.js';
import { eventually } from './http.js';

/** OTLP span kinds (opentelemetry-proto trace.proto `Span.SpanKind`). */
export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

type Value = string | number | boolean | undefined;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly kind: number;
  readonly attributes: Record<string, Value>;
  readonly events: { name: string; attributes: Record<string, unknown> }[];
  /** Span links: the spans this one relates to outside its parent (a webhook delivery -> its intake). */
  readonly links: { traceId: string; spanId: string; attributes: Record<string, unknown> }[];
  readonly status: { code?: number; message?: string };
  readonly resource: Record<string, Value>;
}

/** One data point of a metric export: its attributes and value (a sum's or gauge's value, a histogram's count). */
export interface ReceivedPoint {
  readonly metric: string;
  readonly attributes: Record<string, Value>;
  readonly value: number;
  readonly resource: Record<string, Value>;
}

export interface ReceivedRequest {
  readonly path: string;
  /** `application/x-protobuf`, `application/json`, or `application/grpc` for the gRPC receiver. */
  readonly contentType: string;
  /** The HTTP headers, or the gRPC metadata, lowercase names. */
  readonly headers: Record<string, string>;
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:PORT` (OTEL_EXPORTER_OTLP_ENDPOINT form). */
  readonly url: string;
  /** `http://127.0.0.1:PORT/v1/traces` (the YAML `telemetry.traces.endpoint` form). */
  readonly tracesUrl: string;
  /** `http://127.0.0.1:PORT/v1/metrics`. */
  readonly metricsUrl: string;
  readonly spans: ReceivedSpan[];
  readonly points: ReceivedPoint[];
  /** Export requests received. */
  readonly requests: ReceivedRequest[];
  /** Waits until `count` spans match `filter`, then returns them. */
  waitForSpans(filter: (s: ReceivedSpan) => boolean, count?: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Waits until a data point of `metric` matches `filter`. */
  waitForPoint(metric: string, filter?: (p: ReceivedPoint) => boolean, timeoutMs?: number): Promise<ReceivedPoint>;
}

/**
 * The OTLP protobuf schema, decoded with protobufjs from the .proto files of
 * open-telemetry/opentelemetry-proto (vendored in ./otlp-proto): what a collector reads.
 */
const PROTO_DIR = join(fileURLToPath(new URL('.', import.meta.url)), 'otlp-proto');
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
root.loadSync(['opentelemetry/proto/collector/trace/v1/trace_service.proto', 'opentelemetry/proto/collector/metrics/v1/metrics_service.proto']);
const TraceRequest = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
const TraceResponse = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');
const MetricsRequest = root.lookupType('opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest');

/**
 * A protobuf message as the OTLP/JSON mapping writes it (lowerCamelCase names, enums as numbers,
 * 64-bit integers as strings), except bytes: trace and span ids become lowercase hex, as in JSON.
 */
function protobufToJson(type: protobuf.Type, body: Uint8Array): any {
  const object = type.toObject(type.decode(body), { longs: String, enums: Number, defaults: false, arrays: true });
  return hexIds(object);
}

function hexIds(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(hexIds);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, hexIds(x)]));
  return v;
}

interface AnyValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
}
interface KeyValue {
  key: string;
  value: AnyValue;
}

const valueOf = (v: AnyValue): Value => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue;

const attrs = (list: KeyValue[] | undefined) => Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));

/** An ExportTraceServiceRequest in the OTLP/JSON shape -> spans. */
function collectSpans(payload: any, into: ReceivedSpan[]): void {
  for (const rs of payload.resourceSpans ?? []) {
    const resource = attrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        into.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId || undefined,
          name: s.name,
          kind: s.kind,
          attributes: attrs(s.attributes),
          events: (s.events ?? []).map((e: { name: string; attributes?: KeyValue[] }) => ({ name: e.name, attributes: attrs(e.attributes) })),
          links: (s.links ?? []).map((l: { traceId: string; spanId: string; attributes?: KeyValue[] }) => ({
            traceId: l.traceId,
            spanId: l.spanId,
            attributes: attrs(l.attributes),
          })),
          status: s.status ?? {},
          resource,
        });
      }
    }
  }
}

/** An ExportMetricsServiceRequest in the OTLP/JSON shape -> data points. */
function collectPoints(payload: any, into: ReceivedPoint[]): void {
  for (const rm of payload.resourceMetrics ?? []) {
    const resource = attrs(rm.resource?.attributes);
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of sm.metrics ?? []) {
        const data = m.sum ?? m.gauge ?? m.histogram ?? m.exponentialHistogram ?? {};
        for (const p of data.dataPoints ?? []) {
          const value = p.asInt !== undefined ? Number(p.asInt) : p.asDouble !== undefined ? Number(p.asDouble) : Number(p.count ?? 0);
          into.push({ metric: m.name, attributes: attrs(p.attributes), value, resource });
        }
      }
    }
  }
}

const flatHeaders = (h: IncomingHttpHeaders) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')]));

function receiver(
  url: string,
  spans: ReceivedSpan[],
  points: ReceivedPoint[],
  requests: ReceivedRequest[],
): OtlpReceiver {
  return {
    url,
    tracesUrl: `${url}/v1/traces`,
    metricsUrl: `${url}/v1/metrics`,
    spans,
    points,
    requests,
    waitForSpans: (filter, count = 1, timeoutMs = 8_000) =>
      eventually(() => {
        const found = spans.filter(filter);
        return found.length >= count ? found : undefined;
      }, timeoutMs),
    waitForPoint: (metric, filter = () => true, timeoutMs = 8_000) => eventually(() => points.find((p) => p.metric === metric && filter(p)), timeoutMs),
  };
}

/**
 * A real OTLP/HTTP receiver on loopback, as a collector's `otlphttp` receiver: `POST /v1/traces`
 * and `/v1/metrics` in both encodings the specification defines, `application/x-protobuf`
 * (decoded with the OTLP .proto schema) and `application/json`, gzip-compressed or not. Any
 * other content type is answered 415 and recorded, so a test expecting spans fails loudly.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const points: ReceivedPoint[] = [];
  const requests: ReceivedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const contentType = req.headers['content-type'] ?? '';
      const path = req.url ?? '';
      requests.push({ path, contentType, headers: flatHeaders(req.headers) });
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      const protobufBody = contentType.startsWith('application/x-protobuf');
      if (!protobufBody && !contentType.startsWith('application/json')) {
        res.writeHead(415).end();
        return;
      }
      const decode = (type: protobuf.Type) => (protobufBody ? protobufToJson(type, body) : JSON.parse(body.toString('utf8')));
      if (path === '/v1/traces') collectSpans(decode(TraceRequest), spans);
      else if (path === '/v1/metrics') collectPoints(decode(MetricsRequest), points);
      else {
        res.writeHead(404).end();
        return;
      }
      // the response in the request's encoding: an empty Export*ServiceResponse
      if (protobufBody) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return receiver(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, points, requests);
}

/**
 * A real OTLP/gRPC trace receiver on loopback (`opentelemetry.proto.collector.trace.v1.TraceService/Export`,
 * plaintext HTTP/2 as a collector's `otlp` gRPC receiver on :4317), decoding with the OTLP .proto schema.
 */
export async function startOtlpGrpcReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: ReceivedRequest[] = [];
  const server = new grpc.Server();
  const identity = (b: Buffer) => b;
  server.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const headers = Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)]));
        requests.push({ path: call.getPath(), contentType: 'application/grpc', headers });
        collectSpans(protobufToJson(TraceRequest, call.request), spans);
        callback(null, Buffer.from(TraceResponse.encode(TraceResponse.create({})).finish()));
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  onCleanup(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  return receiver(`http://127.0.0.1:${port}`, spans, [], requests);
}
