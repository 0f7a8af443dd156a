import type { IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { sendJson, startHttpServer, type DemoServer } from './http.js';

/**
 * A tiny OTLP/HTTP trace receiver, so the demo shows traces without a collector. It understands
 * the JSON encoding that gatehouse's exporter sends (`POST /v1/traces`, optionally gzip) and
 * hands each batch of spans to `onSpans`. Not a collector: nothing is stored.
 */

export interface ReceivedSpan {
  readonly service: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: 'INTERNAL' | 'SERVER' | 'CLIENT' | 'PRODUCER' | 'CONSUMER' | 'UNSPECIFIED';
  readonly startNs: bigint;
  readonly durationMs: number;
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
  readonly error: boolean;
}

const KINDS = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'] as const;

export function startOtlpReceiver(port: number, onSpans: (spans: ReceivedSpan[]) => void): Promise<DemoServer> {
  return startHttpServer(port, async (req, res) => {
    if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/traces') return sendJson(res, 404, { error: 'this receiver takes POST /v1/traces' });
    const type = req.headers['content-type'] ?? '';
    if (!type.startsWith('application/json')) {
      await body(req);
      return sendJson(res, 415, { error: 'this demo receiver only decodes OTLP/HTTP JSON' });
    }
    onSpans(decode(JSON.parse((await body(req)).toString('utf8')) as OtlpRequest));
    sendJson(res, 200, {});
  });
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  return req.headers['content-encoding'] === 'gzip' ? promisify(gunzip)(raw) : raw;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface OtlpAttribute {
  key: string;
  value?: OtlpValue;
}
interface OtlpSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: OtlpAttribute[];
  status?: { code?: number };
}
interface OtlpRequest {
  resourceSpans?: { resource?: { attributes?: OtlpAttribute[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
}

/** The OTLP JSON encoding (ids as hex strings, times as nanosecond strings) -> flat spans. */
export function decode(request: OtlpRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service: String(resource['service.name'] ?? ''),
          traceId: s.traceId ?? '',
          spanId: s.spanId ?? '',
          parentSpanId: s.parentSpanId ?? '',
          name: s.name ?? '',
          kind: KINDS[s.kind ?? 0] ?? 'UNSPECIFIED',
          startNs: BigInt(s.startTimeUnixNano ?? 0),
          durationMs: Number((BigInt(s.endTimeUnixNano ?? 0) - BigInt(s.startTimeUnixNano ?? 0)) / 1000n) / 1000,
          attributes: attributes(s.attributes),
          error: s.status?.code === 2,
        });
      }
    }
  }
  return out;
}

function attributes(list: OtlpAttribute[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    if (value === undefined) continue;
    if (value.stringValue !== undefined) out[key] = value.stringValue;
    else if (value.intValue !== undefined) out[key] = Number(value.intValue);
    else if (value.doubleValue !== undefined) out[key] = value.doubleValue;
    else if (value.boolValue !== undefined) out[key] = value.boolValue;
  }
  return out;
}

/**
 * A batch as trees, one line per span, children indented under their parent and in start order:
 *   [trace 72a62a82] SERVER POST /api/checkout  201  107.6 ms  route=checkout
 *   [trace 72a62a82]   CLIENT POST  201  106.5 ms  -> store
 */
export function formatSpans(spans: readonly ReceivedSpan[]): string[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, ReceivedSpan[]>();
  for (const s of [...spans].sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0))) {
    const parent = ids.has(s.parentSpanId) ? s.parentSpanId : '';
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const lines: string[] = [];
  const walk = (parent: string, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      lines.push(formatSpan(s, depth));
      walk(s.spanId, depth + 1);
    }
  };
  walk('', 0);
  return lines;
}

function formatSpan(span: ReceivedSpan, depth: number): string {
  const a = span.attributes;
  const parts = [`[trace ${span.traceId.slice(0, 8)}] ${'  '.repeat(depth)}${span.kind} ${span.name}`];
  const status = String(a['http.response.status_code'] ?? a['error.type'] ?? '-');
  parts.push(status, `${span.durationMs.toFixed(1)} ms`);
  if (span.kind === 'CLIENT' && a['gatehouse.upstream'] !== undefined) parts.push(`-> ${String(a['gatehouse.upstream'])}`);
  else if (a['gatehouse.route'] !== undefined) parts.push(`route=${String(a['gatehouse.route'])}`);
  if (a['http.request.resend_count'] !== undefined) parts.push(`retry ${String(a['http.request.resend_count'])}`);
  if (span.error && a['error.type'] !== undefined && String(a['error.type']) !== status) parts.push(`error=${String(a['error.type'])}`);
  return parts.join('  ');
}
