import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { describe, expect, it, vi } from 'vitest';
import { VERSION } from '../../src/core/version.js';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { SPAN_KIND, startOtlpGrpcReceiver, startOtlpReceiver } from '../helpers/otlp.js';
import { echo, startUpstream } from '../helpers/upstream.js';

/**
 * The standard OpenTelemetry environment variables (SPEC §8), each read back from a real OTLP
 * receiver that decodes what gatehouse sends, or from gatehouse's log.
 */

const config = (upstream: string, telemetry = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
${telemetry}
upstreams: { app: { endpoints: [${upstream}] } }
routes:
  - name: api
    listener: in
    match: { pathPrefix: /api }
    upstream: app
`;

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

/** The warnings gatehouse logged about a variable. */
const warningsAbout = (g: TestGatehouse, variable: string) => g.log.json.filter((l) => l.level === 'warn' && l.variable === variable);

async function traced(env: NodeJS.ProcessEnv, telemetry = '') {
  const up = await startUpstream(echo);
  const g = await startGatehouse(config(up.url, telemetry), { env });
  return { up, g };
}

describe('OTEL_EXPORTER_OTLP_PROTOCOL', () => {
  it('exports OTLP/HTTP protobuf by default, as the specification says', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url });
    await g.fetch('in', '/api/x');
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(server!.name).toBe('GET /api/*');
    expect(otlp.requests.map((r) => [r.path, r.contentType])).toEqual([['/v1/traces', 'application/x-protobuf']]);
  });

  it('sends OTLP/JSON with http/json, and the _TRACES_ variable wins over the general one', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' });
    await g.fetch('in', '/api/x');
    await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(otlp.requests[0]!.contentType).toBe('application/json');
  });

  it('exports over OTLP/gRPC with grpc', async () => {
    const otlp = await startOtlpGrpcReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_SERVICE_NAME: 'over-grpc' });
    await g.fetch('in', '/api/x');
    const [server, client] = await Promise.all([
      otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER).then((s) => s[0]!),
      otlp.waitForSpans((s) => s.kind === SPAN_KIND.CLIENT).then((s) => s[0]!),
    ]);
    expect(client.parentSpanId).toBe(server.spanId);
    expect(server.resource['service.name']).toBe('over-grpc');
    expect(otlp.requests[0]!.path).toBe('/opentelemetry.proto.collector.trace.v1.TraceService/Export');
  });

  it('lets the YAML protocol win, and warns about a protocol it does not know, naming the variable', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced(
      { OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' },
      `telemetry: { traces: { endpoint: ${otlp.tracesUrl}, protocol: http/json } }`,
    );
    await g.fetch('in', '/api/x');
    await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(otlp.requests[0]!.contentType).toBe('application/json');
    // the YAML's protocol wins, so the bad variable is never read: no warning about it
    expect(warningsAbout(g, 'OTEL_EXPORTER_OTLP_PROTOCOL')).toEqual([]);

    const other = await startOtlpReceiver();
    const { g: g2 } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: other.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' });
    expect(warningsAbout(g2, 'OTEL_EXPORTER_OTLP_PROTOCOL')[0].msg).toBe(
      'OTEL_EXPORTER_OTLP_PROTOCOL=thrift is not one of http/protobuf, http/json, grpc; using http/protobuf',
    );
    await g2.fetch('in', '/api/x');
    await other.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(other.requests[0]!.contentType).toBe('application/x-protobuf');
  });
});

describe('OTEL_EXPORTER_OTLP_ENDPOINT, _TRACES_ENDPOINT, _HEADERS, _TIMEOUT', () => {
  it('prefers the YAML endpoint over both variables', async () => {
    const yaml = await startOtlpReceiver();
    const env = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: env.url, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: env.tracesUrl }, `telemetry: { traces: { endpoint: ${yaml.tracesUrl} } }`);
    await g.fetch('in', '/api/x');
    await yaml.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    await g.stop();
    expect(env.requests).toEqual([]);
  });

  it('sends the OTEL_EXPORTER_OTLP_HEADERS and _TRACES_HEADERS, under the YAML headers', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced(
      { OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=shop,x-both=env', OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-api-key=k%20ey' },
      `telemetry: { traces: { endpoint: ${otlp.tracesUrl}, headers: { x-both: yaml } } }`,
    );
    await g.fetch('in', '/api/x');
    await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(otlp.requests[0]!.headers).toMatchObject({ 'x-tenant': 'shop', 'x-api-key': 'k ey', 'x-both': 'yaml' });
  });

  it('warns, naming the variable, about an OTEL_EXPORTER_OTLP_TIMEOUT that is not a number of milliseconds', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_EXPORTER_OTLP_TIMEOUT: '-5' });
    expect(g.log.json.filter((l) => l.level === 'warn' && l.otel === 'diag' && /OTEL_EXPORTER_OTLP_TIMEOUT/.test(l.msg))).toHaveLength(1);
  });
});

describe('exporter failures', () => {
  /** A collector that accepts connections and drops them at once: it is "down". */
  async function droppingCollector() {
    const connections: Socket[] = [];
    const server = createServer((socket) => {
      connections.push(socket);
      socket.destroy();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, connections };
  }

  it('logs a collector that is down at warn, once, however many exports fail, and requests do not wait for it', async () => {
    const collector = await droppingCollector();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '10', OTEL_EXPORTER_OTLP_TIMEOUT: '500' });
    const slowest = { ms: 0 };
    await eventually(
      async () => {
        const started = performance.now();
        expect((await g.fetch('in', '/api/x')).status).toBe(200);
        slowest.ms = Math.max(slowest.ms, performance.now() - started);
        // each export is retried by the exporter: several connections per failed batch
        return g.log.json.some((l) => l.otel === 'export') && collector.connections.length >= 6;
      },
      15_000,
      50,
    );
    const failures = g.log.json.filter((l) => l.otel === 'export');
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ level: 'warn', msg: 'OpenTelemetry export failed (is the collector up?)' });
    expect(slowest.ms).toBeLessThan(1000);
  });
});

describe('OTEL_RESOURCE_ATTRIBUTES and the detected resource', () => {
  it('puts the environment, host and process attributes on every span, OTEL_SERVICE_NAME over service.name', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=production,service.namespace=shop,service.name=from-attributes,k8s.pod.name=store%2D7',
      OTEL_SERVICE_NAME: 'store-sidecar',
    });
    await g.fetch('in', '/api/x');
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(server!.resource).toMatchObject({
      'service.name': 'store-sidecar',
      'service.namespace': 'shop',
      'service.version': VERSION,
      'deployment.environment.name': 'production',
      'k8s.pod.name': 'store-7',
      'telemetry.sdk.name': 'opentelemetry',
      'telemetry.sdk.language': 'nodejs',
      'host.name': hostname(),
      'process.pid': process.pid,
    });
    expect(server!.resource['telemetry.sdk.version']).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('lets the YAML serviceName win, and warns about a malformed list', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced(
      { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_SERVICE_NAME: 'from-env', OTEL_RESOURCE_ATTRIBUTES: 'team=payments,broken' },
      'telemetry: { serviceName: from-yaml }',
    );
    await g.fetch('in', '/api/x');
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(server!.resource['service.name']).toBe('from-yaml');
    expect(server!.resource.team).toBeUndefined(); // the specification drops a malformed list whole
    expect(warningsAbout(g, 'OTEL_RESOURCE_ATTRIBUTES')[0].msg).toMatch(/not a list of key=value pairs \('broken'\)/);
  });
});

describe('OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG', () => {
  it('samples nothing with traceidratio 0, still propagating an unsampled context', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' });
    const res = await g.fetch('in', '/api/x');
    expect(res.json().headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    await g.stop();
    expect(otlp.spans).toEqual([]);
  });

  it('warns about an argument that is not a ratio, naming the variable, and samples with 1', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '25%' });
    expect(warningsAbout(g, 'OTEL_TRACES_SAMPLER_ARG')[0].msg).toBe('OTEL_TRACES_SAMPLER_ARG=25% is not a ratio between 0 and 1; sampling with 1');
    await g.fetch('in', '/api/x');
    await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
  });

  it('warns about a sampler it does not know and uses parentbased_always_on', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_SAMPLER: 'jaeger_remote' });
    expect(warningsAbout(g, 'OTEL_TRACES_SAMPLER')).toHaveLength(1);
    await g.fetch('in', '/api/x', { headers: { traceparent: `00-${TRACE}-${SPAN}-01` } });
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(server!.traceId).toBe(TRACE);
  });
});

describe('OTEL_PROPAGATORS', () => {
  const B3_TRACE = '80f198ee56343ba864fe8b2a57d3eff7';
  const B3_SPAN = 'e457b5a2e4d86bd1';

  it('continues a b3 trace and sends the upstream a b3 header (b3), replacing the client copy', async () => {
    const otlp = await startOtlpReceiver();
    const { g, up } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_PROPAGATORS: 'b3' });
    await g.fetch('in', '/api/x', { headers: { b3: `${B3_TRACE}-${B3_SPAN}-1` } });
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    const [client] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.CLIENT);
    expect(server!.traceId).toBe(B3_TRACE);
    expect(server!.parentSpanId).toBe(B3_SPAN);
    const raw = up.received[0]!.rawHeaders;
    const sent = (name: string) => raw.filter((_v, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === name);
    expect(sent('b3')).toEqual([`${B3_TRACE}-${client!.spanId}-1`]);
    expect(sent('traceparent')).toEqual([]); // tracecontext is not configured
    expect(g.accessLog.json.at(-1).traceId).toBe(B3_TRACE);
  });

  it('reads and writes the X-B3-* headers with b3multi, next to traceparent', async () => {
    const otlp = await startOtlpReceiver();
    const { g, up } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_PROPAGATORS: 'tracecontext,b3multi' });
    await g.fetch('in', '/api/x', { headers: { 'X-B3-TraceId': B3_TRACE, 'X-B3-SpanId': B3_SPAN, 'X-B3-Sampled': '1' } });
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    const [client] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.CLIENT);
    expect(server!.traceId).toBe(B3_TRACE);
    expect(server!.parentSpanId).toBe(B3_SPAN);
    const h = up.received[0]!.headers;
    expect(h['x-b3-traceid']).toBe(B3_TRACE);
    expect(h['x-b3-spanid']).toBe(client!.spanId);
    expect(h['x-b3-sampled']).toBe('1');
    expect(h.traceparent).toBe(`00-${B3_TRACE}-${client!.spanId}-01`);
  });

  it('keeps the W3C default: tracecontext continued, baggage passed on unchanged', async () => {
    const otlp = await startOtlpReceiver();
    const { g, up } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url });
    await g.fetch('in', '/api/x', { headers: { traceparent: `00-${TRACE}-${SPAN}-01`, baggage: 'tenant=shop', b3: `${B3_TRACE}-${B3_SPAN}-1` } });
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(server!.traceId).toBe(TRACE);
    expect(up.received[0]!.headers.baggage).toBe('tenant=shop');
    expect(up.received[0]!.headers.b3).toBe(`${B3_TRACE}-${B3_SPAN}-1`); // not gatehouse's format: passed through
  });

  it('with none reads and writes no context: new traces, client headers untouched; unknown names are warned about', async () => {
    const otlp = await startOtlpReceiver();
    const { g, up } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_PROPAGATORS: 'none,xray' });
    expect(warningsAbout(g, 'OTEL_PROPAGATORS')[0].msg).toMatch(/'xray' is not supported/);
    const traceparent = `00-${TRACE}-${SPAN}-01`;
    await g.fetch('in', '/api/x', { headers: { traceparent } });
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(server!.traceId).not.toBe(TRACE);
    expect(up.received[0]!.headers.traceparent).toBe(traceparent);
  });
});

describe('OTEL_TRACES_EXPORTER', () => {
  it('turns tracing off with none, even with an endpoint set', async () => {
    const otlp = await startOtlpReceiver();
    const { g, up } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_TRACES_EXPORTER: 'none' });
    const traceparent = `00-${TRACE}-${SPAN}-01`;
    await g.fetch('in', '/api/x', { headers: { traceparent } });
    expect(up.received[0]!.headers.traceparent).toBe(traceparent);
    await g.stop();
    expect(otlp.requests).toEqual([]);
  });

  it('prints spans with console, without any endpoint', async () => {
    const printed: unknown[] = [];
    const spy = vi.spyOn(console, 'dir').mockImplementation((span: unknown) => void printed.push(span));
    onCleanup(() => spy.mockRestore());
    const { g } = await traced({ OTEL_TRACES_EXPORTER: 'console', OTEL_BSP_SCHEDULE_DELAY: '10' });
    await g.fetch('in', '/api/x');
    await eventually(() => printed.length >= 2);
    expect(printed.map((s) => (s as { name: string }).name).sort()).toEqual(['GET', 'GET /api/*']);
  });

  it('keeps the YAML endpoint over none, and says so', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_TRACES_EXPORTER: 'none' }, `telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`);
    expect(warningsAbout(g, 'OTEL_TRACES_EXPORTER')[0].msg).toMatch(/overridden by telemetry.traces.endpoint/);
    await g.fetch('in', '/api/x');
    await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
  });
});

describe('OTEL_BSP_*', () => {
  it('waits OTEL_BSP_SCHEDULE_DELAY before exporting, unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE spans are waiting', async () => {
    const slow = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: slow.url, OTEL_BSP_SCHEDULE_DELAY: '60000' });
    await g.fetch('in', '/api/x');
    await new Promise((r) => setTimeout(r, 1500)); // gatehouse's own default delay is 1 s
    expect(slow.requests).toEqual([]);

    const batched = await startOtlpReceiver();
    const { g: g2 } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: batched.url, OTEL_BSP_SCHEDULE_DELAY: '60000', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2' });
    await g2.fetch('in', '/api/x'); // two spans: a full batch, sent at once
    await batched.waitForSpans(() => true, 2, 3000);
  });

  it('warns about a value that is not a count, naming the variable', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_BSP_MAX_QUEUE_SIZE: 'lots' });
    expect(warningsAbout(g, 'OTEL_BSP_MAX_QUEUE_SIZE')[0].msg).toBe('OTEL_BSP_MAX_QUEUE_SIZE=lots is not an integer >= 1; using 8192');
  });
});

describe('OTEL_METRICS_EXPORTER', () => {
  it('pushes the metrics over OTLP (protobuf) with otlp, to OTEL_EXPORTER_OTLP_METRICS_ENDPOINT with its headers; /metrics answers 404', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({
      OTEL_METRICS_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: otlp.metricsUrl,
      OTEL_EXPORTER_OTLP_METRICS_HEADERS: 'x-scope=metrics',
      OTEL_METRIC_EXPORT_INTERVAL: '100',
    });
    await g.fetch('in', '/api/x');
    const point = await otlp.waitForPoint('http.server.request.duration', (p) => p.value >= 1);
    expect(point.resource['service.name']).toBe('gatehouse');
    expect(otlp.requests.every((r) => r.path === '/v1/metrics' && r.contentType === 'application/x-protobuf')).toBe(true);
    expect(otlp.requests[0]!.headers['x-scope']).toBe('metrics');
    expect(otlp.spans).toEqual([]); // no traces endpoint: tracing stays off
    expect((await request(g.admin('/metrics'))).status).toBe(404);
  });

  it('sends OTLP/JSON metrics with OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/json, to the YAML endpoint', async () => {
    const otlp = await startOtlpReceiver();
    const { g } = await traced({ OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json' }, `telemetry: { metrics: { otlp: { endpoint: ${otlp.metricsUrl}, interval: 100ms } } }`);
    await g.fetch('in', '/api/x');
    await otlp.waitForPoint('http.server.request.duration', (p) => p.value >= 1);
    expect(otlp.requests[0]!.contentType).toBe('application/json');
    expect((await request(g.admin('/metrics'))).status).toBe(200); // the YAML did not turn Prometheus off
  });

  it('keeps Prometheus off with none, unless the YAML turns it on', async () => {
    const { g } = await traced({ OTEL_METRICS_EXPORTER: 'none' });
    expect((await request(g.admin('/metrics'))).status).toBe(404);
    const { g: g2 } = await traced({ OTEL_METRICS_EXPORTER: 'none' }, 'telemetry: { metrics: { prometheus: true } }');
    expect((await request(g2.admin('/metrics'))).status).toBe(200);
  });
});

describe('other OTEL_* variables', () => {
  it('warns about a variable gatehouse does not read (a misspelt name), and about OTEL_SDK_DISABLED that is not a boolean', async () => {
    const { g } = await traced({ OTEL_TRACE_SAMPLER: 'always_off', OTEL_SDK_DISABLED: 'yes' });
    expect(warningsAbout(g, 'OTEL_TRACE_SAMPLER')[0].msg).toBe('OTEL_TRACE_SAMPLER is not used by gatehouse');
    expect(warningsAbout(g, 'OTEL_SDK_DISABLED')[0].msg).toBe('OTEL_SDK_DISABLED=yes is neither true nor false; using false');
  });
});
