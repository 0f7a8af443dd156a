// The span path alone, in one process: what tracing one proxied request costs in span work
// (a SERVER span with gatehouse's attributes, renamed for its route, a CLIENT span, traceparent
// for the upstream, both ended, batches of 512 encoded as OTLP protobuf), with the OpenTelemetry
// SDK (TracerProvider + ProtobufTraceSerializer, what gatehouse used before issue 16) and with
// gatehouse's spans and encoder (dist/telemetry). Rounds alternate; CPU time per request.
// Then the encoders alone: one batch of 512 of gatehouse's spans (256 traced requests) written by
// the transformer's ProtobufTraceSerializer and by gatehouse's encoder, CPU time per span.
//   npm run build && taskset -c 1 node bench/span-path.mjs [requests per round]
import { ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, ParentBasedSampler, TracerProvider } from '@opentelemetry/sdk-trace';
import { createTraceEncoder } from '../dist/telemetry/otlp-encoder.js';
import { createSpanTracer } from '../dist/telemetry/span.js';

const N = Number(process.argv[2] ?? 20_000);
const resource = resourceFromAttributes({ 'service.name': 'gatehouse', 'service.version': '0.1.0', 'host.name': 'bench', 'process.pid': process.pid });

/** A span processor that keeps ended spans and encodes every 512 with `encode`. */
function batcher(encode) {
  let batch = [];
  let bytes = 0;
  return {
    onStart() {},
    onEnd(span) {
      batch.push(span);
      if (batch.length === 512) {
        bytes += encode(batch).length;
        batch = [];
      }
    },
    forceFlush: async () => {},
    shutdown: async () => {},
    get bytes() {
      return bytes;
    },
  };
}

const serverAttrs = (i) => ({
  'http.request.method': 'GET',
  'url.path': '/api/1k.bin',
  'url.scheme': 'http',
  'url.query': undefined,
  'server.address': '127.0.0.1:8080',
  'server.port': 8080,
  'client.address': '127.0.0.1',
  'network.peer.address': '127.0.0.1',
  'user_agent.original': undefined,
  'network.protocol.version': '1.1',
  'gatehouse.request_id': `req-${i}`,
});
const clientAttrs = () => ({
  'http.request.method': 'GET',
  'url.full': 'http://127.0.0.1:9090/api/1k.bin',
  'url.path': '/api/1k.bin',
  'url.scheme': 'http',
  'server.address': '127.0.0.1',
  'server.port': 9090,
  'network.peer.address': '127.0.0.1',
  'gatehouse.route': 'store-api',
  'gatehouse.upstream': 'store',
  'http.request.resend_count': undefined,
});

function sdkPath() {
  const processor = batcher((spans) => ProtobufTraceSerializer.serializeRequest(spans));
  const tracer = new TracerProvider({ resource, sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }), spanProcessors: [processor] }).getTracer('gatehouse');
  const w3c = new W3CTraceContextPropagator();
  const setter = { set: (out, k, v) => void out.push(k, v) };
  return (i) => {
    const server = tracer.startSpan('GET', { kind: SpanKind.SERVER, attributes: serverAttrs(i) }, ROOT_CONTEXT);
    server.updateName('GET /api/*');
    server.setAttribute('http.route', '/api/*');
    server.setAttribute('gatehouse.route', 'store-api');
    server.setAttribute('gatehouse.upstream', 'store');
    const client = tracer.startSpan('GET', { kind: SpanKind.CLIENT, attributes: clientAttrs() }, trace.setSpan(ROOT_CONTEXT, server));
    const headers = [];
    w3c.inject(trace.setSpan(ROOT_CONTEXT, client), headers, setter);
    client.setAttribute('http.response.status_code', 200);
    client.end();
    server.setAttribute('http.response.status_code', 200);
    server.end();
  };
}

function gatehousePath() {
  const encode = createTraceEncoder(resource, { name: 'gatehouse' });
  const processor = batcher(encode);
  const tracer = createSpanTracer({ parentBased: true, root: new AlwaysOnSampler() }, resource, [processor]);
  return (i) => {
    const server = tracer.start('GET', SpanKind.SERVER, serverAttrs(i), undefined);
    server.updateName('GET /api/*');
    server.setAttribute('http.route', '/api/*');
    server.setAttribute('gatehouse.route', 'store-api');
    server.setAttribute('gatehouse.upstream', 'store');
    const client = tracer.start('GET', SpanKind.CLIENT, clientAttrs(), server.spanContext());
    const c = client.spanContext();
    const headers = ['traceparent', `00-${c.traceId}-${c.spanId}-0${c.traceFlags.toString(16)}`];
    client.setAttribute('http.response.status_code', 200);
    client.end();
    server.setAttribute('http.response.status_code', 200);
    server.end();
    return headers;
  };
}

const paths = { 'OpenTelemetry SDK + transformer': sdkPath(), 'gatehouse spans + encoder': gatehousePath() };
const cpu = Object.fromEntries(Object.keys(paths).map((k) => [k, []]));
for (let round = 0; round < 8; round++) {
  for (const [name, run] of round % 2 ? Object.entries(paths).reverse() : Object.entries(paths)) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < N; i++) run(i);
    const t = process.cpuUsage(t0);
    if (round >= 2) cpu[name].push((t.user + t.system) / N); // the first two rounds warm the JIT
  }
}
const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
for (const [name, xs] of Object.entries(cpu)) console.log(`${name.padEnd(34)} ${median(xs).toFixed(2)} µs CPU per request (median of ${xs.length} rounds of ${N})`);

// The encoders alone, on the same 512 recorded spans
const recorded = [];
const keep = { onStart() {}, onEnd: (span) => void recorded.push(span), forceFlush: async () => {}, shutdown: async () => {} };
const recorder = createSpanTracer({ parentBased: true, root: new AlwaysOnSampler() }, resource, [keep]);
for (let i = 0; recorded.length < 512; i++) {
  const server = recorder.start('GET /api/*', SpanKind.SERVER, { ...serverAttrs(i), 'http.route': '/api/*', 'gatehouse.route': 'store-api', 'gatehouse.upstream': 'store' }, undefined);
  const client = recorder.start('GET', SpanKind.CLIENT, clientAttrs(), server.spanContext());
  client.setAttribute('http.response.status_code', 200);
  client.end();
  server.setAttribute('http.response.status_code', 200);
  server.end();
}
const encoders = { "transformer's ProtobufTraceSerializer": (spans) => ProtobufTraceSerializer.serializeRequest(spans), "gatehouse's encoder": createTraceEncoder(resource, { name: 'gatehouse' }) };
const perSpan = Object.fromEntries(Object.keys(encoders).map((k) => [k, []]));
const bytes = {};
for (let round = 0; round < 8; round++) {
  for (const [name, encode] of round % 2 ? Object.entries(encoders).reverse() : Object.entries(encoders)) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < 200; i++) bytes[name] = encode(recorded).length;
    const t = process.cpuUsage(t0);
    if (round >= 2) perSpan[name].push(((t.user + t.system) * 1000) / (200 * recorded.length));
  }
}
for (const [name, xs] of Object.entries(perSpan)) console.log(`${name.padEnd(38)} ${median(xs).toFixed(0)} ns CPU per span (${bytes[name]} bytes per batch of ${recorded.length}; median of ${xs.length} rounds)`);
