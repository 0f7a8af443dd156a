import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { closedPort, echo, startUpstream } from '../helpers/upstream.js';

const config = (upstream: string, tracesEndpoint?: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
telemetry:
  serviceName: shop-sidecar
${tracesEndpoint ? `  traces: { endpoint: ${tracesEndpoint} }` : ''}
upstreams: { app: { endpoints: [${upstream}] } }
routes:
  - name: api
    listener: in
    match: { pathPrefix: /api }
    upstream: app
    rewrite: { stripPrefix: /api }
`;

const PARENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN = '00f067aa0ba902b7';

describe('tracing', () => {
  it('exports a SERVER span per request and a CLIENT span per attempt, linked to the incoming traceparent', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, otlp.tracesUrl));

    const res = await g.fetch('in', '/api/orders/7?x=1', {
      headers: { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01`, tracestate: 'vendor=1', authorization: 'Bearer span-secret-tok', cookie: 'sid=span-cookie' },
    });
    expect(res.status).toBe(200);

    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    const [client] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.CLIENT);

    expect(server!.name).toBe('GET /api/*');
    expect(server!.traceId).toBe(PARENT_TRACE);
    expect(server!.parentSpanId).toBe(PARENT_SPAN);
    expect(server!.resource['service.name']).toBe('shop-sidecar');
    expect(server!.attributes).toMatchObject({
      'http.request.method': 'GET',
      'url.path': '/api/orders/7',
      'url.scheme': 'http',
      'http.route': '/api/*',
      'http.response.status_code': 200,
      'server.address': '127.0.0.1',
      'server.port': g.gh.listenerAddress('in')!.port,
      'network.peer.address': '127.0.0.1',
      'gatehouse.route': 'api',
      'gatehouse.upstream': 'app',
    });
    expect(server!.attributes['error.type']).toBeUndefined();

    expect(client!.name).toBe('GET');
    expect(client!.traceId).toBe(PARENT_TRACE);
    expect(client!.parentSpanId).toBe(server!.spanId);
    expect(client!.attributes).toMatchObject({
      'http.request.method': 'GET',
      'url.path': '/orders/7',
      'url.scheme': 'http',
      'http.response.status_code': 200,
      'server.address': '127.0.0.1',
      'server.port': up.port,
      'network.peer.address': '127.0.0.1',
      'gatehouse.route': 'api',
      'gatehouse.upstream': 'app',
    });
    expect(client!.attributes['http.request.resend_count']).toBeUndefined();

    // exactly one traceparent upstream, carrying the CLIENT span's id; tracestate continued
    const raw = up.received[0]!.rawHeaders;
    const traceparents = raw.filter((_v, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'traceparent');
    expect(traceparents).toEqual([`00-${PARENT_TRACE}-${client!.spanId}-01`]);
    expect(up.received[0]!.headers.tracestate).toBe('vendor=1');
    expect(g.accessLog.json.at(-1).traceId).toBe(PARENT_TRACE);
    expect(JSON.stringify(otlp.spans)).not.toMatch(/span-secret-tok|span-cookie/);
  });

  it('records the query (secrets REDACTED), client address, user agent and protocol version on the SERVER span, url.full on the CLIENT span', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, otlp.tracesUrl));
    const query = 'page=2&access_token=tok-1&Signature=sig-2&code=c-3&api%5Fkey=k-4&sort=asc';
    const redacted = 'page=2&access_token=REDACTED&Signature=REDACTED&code=REDACTED&api%5Fkey=REDACTED&sort=asc';
    await g.fetch('in', `/api/orders/7?${query}`, { headers: { 'user-agent': 'shop-app/3.1' } });
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    const [client] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.CLIENT);
    expect(server!.attributes).toMatchObject({
      'url.query': redacted,
      'client.address': '127.0.0.1',
      'user_agent.original': 'shop-app/3.1',
      'network.protocol.version': '1.1',
    });
    expect(client!.attributes).toMatchObject({
      'url.full': `http://127.0.0.1:${up.port}/orders/7?${redacted}`,
      'url.path': '/orders/7',
      'server.address': '127.0.0.1',
      'server.port': up.port,
      'network.peer.address': '127.0.0.1',
    });
    expect(JSON.stringify(otlp.spans)).not.toMatch(/tok-1|sig-2|c-3|k-4/);
    expect(up.received[0]!.url).toBe(`/orders/7?${query}`); // redacted in the span only
  });

  it('records the IP connected to as network.peer.address of an endpoint named by host name, which url.full and server.address keep', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(`http://localhost:${up.port}`, otlp.tracesUrl));
    await g.fetch('in', '/api/x');
    const [client] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.CLIENT);
    expect(client!.attributes).toMatchObject({
      'url.full': `http://localhost:${up.port}/x`,
      'server.address': 'localhost',
      'server.port': up.port,
      'network.peer.address': '127.0.0.1',
    });
  });

  it('starts a new trace when the client sends none, and reports it in the problem body', async () => {
    const otlp = await startOtlpReceiver();
    const port = await closedPort();
    const g = await startGatehouse(config(`http://127.0.0.1:${port}`, otlp.tracesUrl));
    const res = await g.fetch('in', '/api/x');
    expect(res.status).toBe(502);
    const body = res.json();
    expect(body.traceId).toMatch(/^[0-9a-f]{32}$/);
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    const [client] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.CLIENT);
    expect(server!.traceId).toBe(body.traceId);
    expect(server!.parentSpanId).toBeUndefined();
    expect(server!.attributes['error.type']).toBe('bad_gateway');
    expect(server!.attributes['http.response.status_code']).toBe(502);
    expect(server!.status.code).toBe(2); // STATUS_CODE_ERROR
    expect(client!.attributes['error.type']).toBe('connect-failure');
    expect(client!.parentSpanId).toBe(server!.spanId);
  });

  it('flushes pending spans at shutdown', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, otlp.tracesUrl));
    await g.fetch('in', '/api/x'); // its spans wait in the batch (1 s delay)...
    await g.stop(); // ...and are sent before shutdown resolves
    expect(otlp.spans.map((s) => s.kind).sort()).toEqual([SPAN_KIND.SERVER, SPAN_KIND.CLIENT].sort());
  });

  it('names an unrouted request by its method alone', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, otlp.tracesUrl));
    expect((await g.fetch('in', '/nowhere')).status).toBe(404);
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(server!.name).toBe('GET');
    expect(server!.attributes['http.route']).toBeUndefined();
    expect(server!.attributes['error.type']).toBe('no_route');
  });

  it('uses OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME when the YAML sets none', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url).replace('  serviceName: shop-sidecar\n', '  accessLog: stdout\n'), {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_SERVICE_NAME: 'from-env' },
    });
    await g.fetch('in', '/api/x');
    const [server] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
    expect(server!.resource['service.name']).toBe('from-env');
    expect(otlp.requests[0]).toMatchObject({ path: '/v1/traces', contentType: 'application/x-protobuf' });
  });

  it('uses OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url), { env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlp.tracesUrl } });
    await g.fetch('in', '/api/x');
    await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER);
  });

  it('turns tracing off with OTEL_SDK_DISABLED=true and passes the client traceparent through untouched', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, otlp.tracesUrl), { env: { OTEL_SDK_DISABLED: 'true' } });
    const traceparent = `00-${PARENT_TRACE}-${PARENT_SPAN}-01`;
    const res = await g.fetch('in', '/api/x', { headers: { traceparent } });
    expect(res.json().headers.traceparent).toBe(traceparent);
    expect(g.accessLog.json.at(-1).traceId).toBe(PARENT_TRACE);
    await g.stop(); // flushes whatever would have been exported
    expect(otlp.requests).toEqual([]);
  });

  it('honours OTEL_TRACES_SAMPLER=always_off when the YAML sets no sampleRatio, still propagating the context', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url, otlp.tracesUrl), { env: { OTEL_TRACES_SAMPLER: 'always_off' } });
    const res = await g.fetch('in', '/api/x');
    expect(res.json().headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    await g.stop();
    expect(otlp.spans).toEqual([]);
  });
});

describe('metrics', () => {
  it('exposes the server and client duration histograms and the reload counter as Prometheus text', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url));
    await g.fetch('in', '/api/a');
    await g.fetch('in', '/nowhere');
    const reloaded = await request(g.admin('/admin/reload'), { method: 'POST' });
    expect(reloaded.status).toBe(200);

    const res = await request(g.admin('/metrics'));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text = res.text;
    expect(text).toMatch(/^# TYPE http_server_request_duration_seconds histogram$/m);
    expect(text).toMatch(/^# TYPE http_client_request_duration_seconds histogram$/m);
    expect(text).toMatch(/^http_server_request_duration_seconds_count\{[^}]*gatehouse_route="api"[^}]*http_response_status_code="200"[^}]*\} 1$/m);
    expect(text).toMatch(/^http_server_request_duration_seconds_count\{[^}]*http_response_status_code="404"[^}]*error_type="no_route"[^}]*\} 1$/m);
    expect(text).toMatch(/^http_client_request_duration_seconds_count\{[^}]*gatehouse_upstream="app"[^}]*\} 1$/m);
    expect(text).toMatch(/^http_server_request_duration_seconds_bucket\{[^}]*le="0.005"[^}]*\} \d+$/m);
    // both results are exported from the start, so rate() works before the first failure
    expect(text).toMatch(/^gatehouse_config_reloads_total\{result="success"\} 0$/m);
    expect(text).toMatch(/^gatehouse_config_reloads_total\{result="failure"\} 0$/m);
  });
});

describe('access log', () => {
  it('writes one JSON line per request with the documented keys, and never Authorization or cookies', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url));
    await g.fetch('in', '/api/orders?card=1', {
      headers: { authorization: 'Bearer tok-abc123', cookie: 'session=cookie-xyz789', 'x-request-id': 'req-1' },
    });
    await g.fetch('in', '/nope');
    const [ok, missing] = await eventually(() => (g.accessLog.json.length >= 2 ? g.accessLog.json : undefined));
    const keys = ['time', 'route', 'method', 'path', 'status', 'durationMs', 'upstream', 'attempts', 'retrySkipped', 'traceId', 'requestId', 'error'];
    for (const line of [ok, missing]) for (const k of keys) expect(line, k).toHaveProperty(k);
    expect(ok).toMatchObject({ route: 'api', method: 'GET', path: '/api/orders', status: 200, upstream: 'app', attempts: 1, requestId: 'req-1', error: null });
    expect(new Date(ok.time).toISOString()).toBe(ok.time);
    expect(ok.durationMs).toBeGreaterThan(0);
    expect(missing).toMatchObject({ route: null, status: 404, error: 'no_route', attempts: 0 });
    expect(g.accessLog.all).not.toContain('tok-abc123');
    expect(g.accessLog.all).not.toContain('cookie-xyz789');
    expect(g.log.all).not.toContain('tok-abc123');
  });

  it('writes nothing with accessLog: off', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(config(up.url).replace('  serviceName: shop-sidecar\n', '  accessLog: "off"\n'));
    expect((await g.fetch('in', '/api/x')).status).toBe(200);
    expect(g.accessLog.lines).toEqual([]);
  });
});
