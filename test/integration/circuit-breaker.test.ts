import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { reply, startUpstream, type Reply } from '../helpers/upstream.js';

/** An upstream whose answer the test switches: `up.status = 200`. */
async function switchable(initial: number) {
  const state = { status: initial };
  const handler: Reply = (req, res, body) => reply(state.status, `status ${state.status}`)(req, res, body);
  const up = await startUpstream(handler);
  return Object.assign(up, { state });
}

function config(url: string, breaker: string, extra = ''): string {
  return `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  app:
    endpoints: [${url}]
    circuitBreaker: ${breaker}
routes:
  - { name: r, listener: in, match: { pathPrefix: / }, upstream: app }
${extra}`;
}

const breakerOf = async (g: TestGatehouse) => (await request(g.admin('/admin/upstreams'))).json().upstreams.app.breaker;
const circuitState = async (g: TestGatehouse) => sample(await scrape(g.admin('/metrics')), 'gatehouse_circuit_state', { upstream: 'app' });

describe('circuit breaker', () => {
  it('opens after N failures in a row and answers 503 circuit_open at once, with Retry-After, without upstream traffic', async () => {
    const otlp = await startOtlpReceiver();
    const up = await switchable(500);
    const g = await startGatehouse(config(up.url, '{ consecutiveFailures: 3, openFor: 20s }', `telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`));
    expect(await breakerOf(g)).toEqual({ state: 'closed', retryInMs: 0 });
    expect(await circuitState(g)).toBe(0);
    for (let i = 0; i < 3; i++) expect((await g.fetch('in', '/x')).status).toBe(500); // passed through
    expect(up.received).toHaveLength(3);

    const started = performance.now();
    const res = await g.fetch('in', '/x');
    expect(performance.now() - started).toBeLessThan(500);
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('circuit_open');
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(19);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(20);
    expect(res.json()).toMatchObject({ type: 'urn:gatehouse:error:circuit_open', code: 'circuit_open', status: 503, route: 'r' });
    expect(res.json().detail).toMatch(/^upstream 'app' failed 3 times in a row; retrying in (19|20)s$/);
    expect(up.received).toHaveLength(3); // not touched

    const view = await breakerOf(g);
    expect(view.state).toBe('open');
    expect(view.retryInMs).toBeGreaterThan(18_000);
    expect(view.retryInMs).toBeLessThanOrEqual(20_000);
    expect(await circuitState(g)).toBe(2);
    await eventually(() => g.accessLog.json.length === 4);
    expect(g.accessLog.json[3]).toMatchObject({ status: 503, error: 'circuit_open', attempts: 0 });

    await g.stop();
    const servers = otlp.spans.filter((s) => s.kind === SPAN_KIND.SERVER);
    const opened = servers.flatMap((s) => s.events).filter((e) => e.name === 'gatehouse.circuit_breaker.transition');
    expect(opened).toEqual([{ name: 'gatehouse.circuit_breaker.transition', attributes: { 'gatehouse.upstream': 'app', 'gatehouse.circuit.from': 'closed', 'gatehouse.circuit.to': 'open' } }]);
    expect(g.log.json.some((l) => l.msg === 'circuit breaker opened' && l.upstream === 'app')).toBe(true);
  });

  it('half-opens after openFor, closes on a successful probe, and re-opens on a failed one', async () => {
    const up = await switchable(503);
    const g = await startGatehouse(config(up.url, '{ consecutiveFailures: 2, openFor: 700ms }'));
    await g.fetch('in', '/x');
    await g.fetch('in', '/x');
    expect((await g.fetch('in', '/x')).headers['gatehouse-error']).toBe('circuit_open');
    expect(up.received).toHaveLength(2);

    await eventually(async () => (await breakerOf(g)).state === 'half-open', 5_000);
    expect(await circuitState(g)).toBe(1);
    up.state.status = 200;
    const probe = await g.fetch('in', '/x');
    expect(probe.status).toBe(200);
    expect(await breakerOf(g)).toEqual({ state: 'closed', retryInMs: 0 });
    expect(await circuitState(g)).toBe(0);

    // open it again, then fail the probe: open at once, for another openFor
    up.state.status = 502;
    await g.fetch('in', '/x');
    await g.fetch('in', '/x');
    expect((await breakerOf(g)).state).toBe('open');
    await eventually(async () => (await breakerOf(g)).state === 'half-open', 5_000);
    const seen = up.received.length;
    expect((await g.fetch('in', '/x')).status).toBe(502); // the probe, passed through
    expect(up.received).toHaveLength(seen + 1);
    const after = await g.fetch('in', '/x');
    expect(after.headers['gatehouse-error']).toBe('circuit_open');
    expect(after.json().detail).toMatch(/failed a probe/);
    expect(up.received).toHaveLength(seen + 1);
    expect((await breakerOf(g)).state).toBe('open');
  });

  it('ratio mode: opens when failureRatio of the requests in the window failed, once minRequests were seen', async () => {
    const script = [200, 500, 200, 500, 500];
    let i = 0;
    const up = await startUpstream((req, res, body) => reply(script[Math.min(i++, script.length - 1)]!)(req, res, body));
    const g = await startGatehouse(config(up.url, '{ failureRatio: 0.5, minRequests: 4, window: 10s, openFor: 10s }'));
    for (const expected of [200, 500, 200]) expect((await g.fetch('in', '/x')).status).toBe(expected);
    expect((await breakerOf(g)).state).toBe('closed');
    expect((await g.fetch('in', '/x')).status).toBe(500); // 2 of 4 failed: 50%
    expect((await breakerOf(g)).state).toBe('open');
    const res = await g.fetch('in', '/x');
    expect(res.headers['gatehouse-error']).toBe('circuit_open');
    expect(res.json().detail).toMatch(/^upstream 'app' failed 2 of its last 4 requests; retrying in \d+s$/);
    expect(up.received).toHaveLength(4);
  });

  it('ratio mode alone ignores failures in a row below minRequests', async () => {
    const up = await switchable(500);
    const g = await startGatehouse(config(up.url, '{ failureRatio: 0.9, minRequests: 8 }'));
    for (let i = 0; i < 7; i++) expect((await g.fetch('in', '/x')).status).toBe(500);
    expect((await breakerOf(g)).state).toBe('closed'); // the default consecutiveFailures: 5 is not on
    expect((await g.fetch('in', '/x')).status).toBe(500);
    expect((await breakerOf(g)).state).toBe('open');
  });

  it('does not open on 429 or other 4xx answers: a throttling API is not a dead one', async () => {
    const up = await startUpstream([reply(429, 'slow down', { 'retry-after': '1' }), reply(429), reply(404), reply(400), reply(429), reply(429)]);
    const g = await startGatehouse(config(up.url, '{ consecutiveFailures: 2 }'));
    for (let i = 0; i < 6; i++) expect((await g.fetch('in', '/x')).status).toBeLessThan(500);
    expect(up.received).toHaveLength(6);
    expect(await breakerOf(g)).toEqual({ state: 'closed', retryInMs: 0 });
  });

  it('counts connect failures, and a retry policy does not retry circuit_open', async () => {
    const { closedPort } = await import('../helpers/upstream.js');
    const port = await closedPort();
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  app: { endpoints: [http://127.0.0.1:${port}], circuitBreaker: { consecutiveFailures: 3 } }
routes:
  - { name: r, listener: in, match: { pathPrefix: / }, upstream: app, retry: { attempts: 5, on: [connect-failure], backoff: { base: 1ms, max: 1ms } } }
`);
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(503);
    expect(res.headers['gatehouse-error']).toBe('circuit_open'); // tries 1-3 failed, the 4th was refused
    await eventually(() => g.accessLog.json.length === 1);
    expect(g.accessLog.json[0]).toMatchObject({ attempts: 3, error: 'circuit_open' });
  });

  it('keeps its state across a reload that leaves the upstream unchanged, and starts closed when it changes', async () => {
    const up = await switchable(500);
    const g = await startGatehouse(config(up.url, '{ consecutiveFailures: 2, openFor: 60s }'));
    await g.fetch('in', '/x');
    await g.fetch('in', '/x');
    expect((await breakerOf(g)).state).toBe('open');

    g.write(config(up.url, '{ consecutiveFailures: 2, openFor: 60s }', '  - { name: other, listener: in, match: { pathPrefix: /other }, upstream: app }'));
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect((await breakerOf(g)).state).toBe('open');
    expect((await g.fetch('in', '/x')).headers['gatehouse-error']).toBe('circuit_open');
    expect(up.received).toHaveLength(2);

    g.write(config(up.url, '{ consecutiveFailures: 3, openFor: 60s }'));
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect((await breakerOf(g)).state).toBe('closed');
    expect((await g.fetch('in', '/x')).status).toBe(500);
  });

  it('shows no breaker for an upstream without one', async () => {
    const up = await startUpstream(reply(200));
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
    const view = (await request(g.admin('/admin/upstreams'))).json().upstreams.app;
    expect(view).toEqual({ breaker: null, inFlight: 0, endpoints: [{ url: up.url, healthy: true, ejected: false, inFlight: 0 }] });
    expect(await circuitState(g)).toBeUndefined();
  });
});
