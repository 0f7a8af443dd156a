import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpanKind, SpanStatusCode, TraceFlags, trace, ROOT_CONTEXT, type Span } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler, AlwaysOnSampler, TraceIdRatioBasedSampler, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { createSpanPreEncoder, createTraceEncoder } from '../../../src/telemetry/otlp-encoder.js';
import { createSpanTracer, RecordedSpan, type Sampling } from '../../../src/telemetry/span.js';

// gatehouse's OTLP protobuf encoder against the OpenTelemetry transformer's serializer, both read
// back by protobufjs from the opentelemetry-proto .proto files (an independent decoder).
const PROTO_DIR = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'helpers', 'otlp-proto');
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
root.loadSync(['opentelemetry/proto/collector/trace/v1/trace_service.proto']);
const TraceRequest = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
const decode = (bytes: Uint8Array) => TraceRequest.toObject(TraceRequest.decode(bytes), { longs: String, bytes: String, defaults: false });

const resource = resourceFromAttributes({
  'service.name': 'gatehouse',
  'process.pid': 4242,
  'process.command_args': ['node', 'dist/main.js', 'run'],
  'host.arch': 'amd64',
  ratio: 0.25,
  ok: true,
});

function tracerWith(sampling: Sampling = { parentBased: true, root: new AlwaysOnSampler() }, onEnd?: (span: RecordedSpan) => void) {
  const ended: ReadableSpan[] = [];
  const processor: SpanProcessor = { onStart: () => {}, onEnd: (s) => void ended.push(s), forceFlush: async () => {}, shutdown: async () => {} };
  return { tracer: createSpanTracer(sampling, resource, [processor], onEnd), ended };
}

describe('the OTLP protobuf encoder', () => {
  // each span encoded when it ends (what tracing does for OTLP protobuf) or all at export
  it.each([
    ['at export', false],
    ['as each span ends', true],
  ])('writes what the OpenTelemetry transformer writes, for every kind of field and value, encoding %s', (_when, preEncode) => {
    const { tracer, ended } = tracerWith(undefined, preEncode ? createSpanPreEncoder() : undefined);
    const remote = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED, isRemote: true, traceState: new TraceState('vendor=a,other=b') };
    const server = tracer.start('GET /api/checkout/*', SpanKind.SERVER, { 'http.request.method': 'GET', 'url.query': undefined, 'server.port': 8080, 'user_agent.original': 'ü-agent ✓ '.repeat(20) }, remote);
    server.setAttribute('http.response.status_code', 503);
    server.setAttribute('neg', -7);
    server.setAttribute('big', 2 ** 40);
    server.setAttribute('pi', 3.14159);
    server.setAttribute('flag', false);
    server.setAttribute('list', [1, 2, 3]);
    server.setAttribute('long', 'x'.repeat(300));
    // around the one-pass short-string path: a KeyValue of 127 bytes, of 128, non-ASCII, empty
    for (const n of [119, 120, 121, 126, 127, 128]) server.setAttribute(`k${n}`, 'y'.repeat(n));
    server.setAttribute('accent', 'caf\u00e9');
    server.setAttribute('high', 'a\u0080b');
    server.setAttribute('empty', '');
    server.addEvent('gatehouse.retry', { attempt: 2, reason: 'status 503' });
    server.addEvent('bare');
    server.setStatus({ code: SpanStatusCode.ERROR, message: 'upstream_unavailable' });
    const client = tracer.start('GET', SpanKind.CLIENT, { 'url.full': 'http://store:8080/api?page=2' }, server.spanContext());
    client.end();
    const delivery = tracer.start('POST', SpanKind.CLIENT, { 'gatehouse.webhook.id': 'wh-1' }, undefined, [{ context: remote, attributes: { 'gatehouse.link': 'cause' } }]);
    delivery.end();
    server.end();
    for (let i = 0; i < 1500; i++) tracer.start(`span ${i}`, SpanKind.INTERNAL, { i }, undefined).end(); // more than a 64 KiB slab of spans
    // spans longer than what a 64 KiB slab has left, and enough of them to fill several slabs
    for (let i = 0; i < 40; i++) tracer.start(`big ${i}`, SpanKind.INTERNAL, { blob: 'z'.repeat(3000 + 500 * i) }, undefined).end();
    expect(ended.every((s) => (s as RecordedSpan).encoded !== undefined)).toBe(preEncode);

    const ours = createTraceEncoder(resource, { name: 'gatehouse' })(ended as RecordedSpan[]);
    const theirs = ProtobufTraceSerializer.serializeRequest(ended)!;
    expect(decode(ours)).toEqual(decode(theirs));
    expect(ours.length).toBe(theirs.length);
  });

  it('writes nothing for an unsampled span, and the unsampled context still propagates', () => {
    const { tracer, ended } = tracerWith({ parentBased: true, root: new AlwaysOffSampler() });
    const span = tracer.start('GET', SpanKind.SERVER, {}, undefined);
    expect(span.isRecording()).toBe(false);
    expect(trace.isSpanContextValid(span.spanContext())).toBe(true);
    expect(span.spanContext().traceFlags).toBe(TraceFlags.NONE);
    span.end();
    expect(ended).toHaveLength(0);
    const child = tracer.start('GET', SpanKind.CLIENT, {}, { ...span.spanContext(), traceFlags: TraceFlags.SAMPLED });
    expect(child.isRecording()).toBe(true); // parent-based: the parent's flag decides
  });

  it('samples new traces by trace id ratio as the SDK sampler does', () => {
    const { tracer } = tracerWith({ parentBased: false, root: new TraceIdRatioBasedSampler(0.5) });
    const spans = Array.from({ length: 400 }, () => tracer.start('x', SpanKind.INTERNAL, {}, undefined));
    const sampled = spans.filter((s) => s.isRecording()).length;
    expect(sampled).toBeGreaterThan(100);
    expect(sampled).toBeLessThan(300);
  });

  it('is an OpenTelemetry API span: other instrumentation starts children of it through the context', () => {
    const { tracer, ended } = tracerWith();
    const parent = tracer.start('GET /api', SpanKind.SERVER, {}, undefined);
    const child: Span = tracer.startSpan('db query', { kind: SpanKind.CLIENT, attributes: { 'db.system': 'redis' } }, trace.setSpan(ROOT_CONTEXT, parent));
    child.end();
    parent.end();
    const [c] = ended;
    expect(c!.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(c!.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(c!.attributes).toEqual({ 'db.system': 'redis' });
    expect(tracer.startActiveSpan('active', (s) => (s.end(), trace.getActiveSpan() === s || true))).toBe(true);
  });
});
