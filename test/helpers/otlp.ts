import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { onCleanup } from './cleanup.js';
import { eventually } from './http.js';

/** OTLP span kinds (opentelemetry-proto trace.proto `Span.SpanKind`). */
export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly kind: number;
  readonly attributes: Record<string, string | number | boolean | undefined>;
  readonly events: { name: string; attributes: Record<string, unknown> }[];
  /** Span links: the spans this one relates to outside its parent (a webhook delivery -> its intake). */
  readonly links: { traceId: string; spanId: string; attributes: Record<string, unknown> }[];
  readonly status: { code?: number; message?: string };
  readonly resource: Record<string, string | number | boolean | undefined>;
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:PORT` (OTEL_EXPORTER_OTLP_ENDPOINT form). */
  readonly url: string;
  /** `http://127.0.0.1:PORT/v1/traces` (the YAML `telemetry.traces.endpoint` form). */
  readonly tracesUrl: string;
  readonly spans: ReceivedSpan[];
  /** Export requests received, with their content types. */
  readonly requests: { path: string; contentType: string }[];
  /** Waits until `count` spans match `filter`, then returns them. */
  waitForSpans(filter: (s: ReceivedSpan) => boolean, count?: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
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

const valueOf = (v: AnyValue): string | number | boolean | undefined =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue;

const attrs = (list: KeyValue[] | undefined) => Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));

/**
 * A real OTLP/HTTP trace receiver on loopback. @opentelemetry/exporter-trace-otlp-http sends
 * `application/json` (ExportTraceServiceRequest in the OTLP JSON mapping: ids as hex strings,
 * enums as numbers), gzip-compressed when OTEL_EXPORTER_OTLP_COMPRESSION=gzip. A protobuf body
 * is answered 415 and recorded, so a test expecting spans fails loudly instead of guessing.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: { path: string; contentType: string }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const contentType = req.headers['content-type'] ?? '';
      requests.push({ path: req.url ?? '', contentType });
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      if (req.url !== '/v1/traces' || !contentType.startsWith('application/json')) {
        res.writeHead(415).end();
        return;
      }
      const payload = JSON.parse(body.toString('utf8')) as {
        resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: any[] }[] }[];
      };
      for (const rs of payload.resourceSpans ?? []) {
        const resource = attrs(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
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
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return {
    url,
    tracesUrl: `${url}/v1/traces`,
    spans,
    requests,
    waitForSpans: (filter, count = 1, timeoutMs = 8_000) =>
      eventually(() => {
        const found = spans.filter(filter);
        return found.length >= count ? found : undefined;
      }, timeoutMs),
  };
}
