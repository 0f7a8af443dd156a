import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request, type Response } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { reply, startUpstream, type Reply, type Upstream } from '../helpers/upstream.js';

/** An upstream that answers its own name, and whose /healthz the test can fail. */
async function named(name: string, options: { status?: number; hold?: boolean } = {}) {
  const state = { healthy: true, status: options.status ?? 200, held: [] as (() => void)[] };
  const handler: Reply = (req, res, body) => {
    if (req.url === '/healthz') return reply(state.healthy ? 200 : 503, 'health')(req, res, body);
    if (options.hold) {
      state.held.push(() => void reply(state.status, name)(req, res, body));
      return;
    }
    return reply(state.status, name)(req, res, body);
  };
  const up = await startUpstream(handler);
  return Object.assign(up, { state, traffic: () => up.received.filter((r) => r.url !== '/healthz').length });
}

function config(upstream: string, extra = ''): string {
  return `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  app:
${upstream
  .trim()
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
routes:
  - { name: r, listener: in, match: { pathPrefix: / }, upstream: app }
${extra}`;
}

const upstreamView = async (g: TestGatehouse) => (await request(g.admin('/admin/upstreams'))).json().upstreams.app;
const endpointView = async (g: TestGatehouse, up: Upstream) => (await upstreamView(g)).endpoints.find((e: { url: string }) => e.url === up.url);
const healthyGauge = async (g: TestGatehouse, up: Upstream) => sample(await scrape(g.admin('/metrics')), 'gatehouse_upstream_healthy', { upstream: 'app', endpoint: up.url });

async function texts(g: TestGatehouse, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await g.fetch('in', `/r${i}`)).text);
  return out;
}

function expectProblem(res: Response, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['gatehouse-error']).toBe(code);
  expect(res.json()).toMatchObject({ type: `urn:gatehouse:error:${code}`, status, code, route: 'r' });
}

describe('load balancing', () => {
  it('round-robin spreads requests evenly over the endpoints', async () => {
    const [a, b, c] = await Promise.all([named('a'), named('b'), named('c')]);
    const g = await startGatehouse(config(`endpoints: [${a.url}, ${b.url}, ${c.url}]\nloadBalancing: round-robin`));
    const seen = await texts(g, 9);
    expect(seen).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('least-request sends new requests to the endpoint with fewer in flight', async () => {
    const slow = await named('slow', { hold: true });
    const fast = await named('fast');
    const g = await startGatehouse(config(`endpoints: [${slow.url}, ${fast.url}]\nloadBalancing: least-request`));
    const pending: Promise<Response>[] = [];
    for (let i = 0; i < 10; i++) {
      pending.push(g.fetch('in', `/r${i}`));
      await eventually(() => slow.traffic() + fast.traffic() === i + 1); // one at a time, so in-flight counts are settled
    }
    // with round-robin the slow endpoint would hold 5; least-request gives it at most the first
    expect(slow.traffic()).toBeLessThanOrEqual(1);
    expect(fast.traffic()).toBeGreaterThanOrEqual(9);
    const view = await upstreamView(g);
    expect(view.endpoints.find((e: { url: string }) => e.url === slow.url).inFlight).toBe(slow.traffic());
    for (const release of slow.state.held) release();
    await Promise.all(pending);
  });
});

describe('bulkhead', () => {
  it('answers 503 overloaded at once when maxConcurrent requests are in flight, and admits again when one ends', async () => {
    const up = await named('app', { hold: true });
    const g = await startGatehouse(config(`endpoints: [${up.url}]\nmaxConcurrent: 2`));
    const first = [g.fetch('in', '/1'), g.fetch('in', '/2')];
    await eventually(() => up.traffic() === 2);
    expect((await upstreamView(g)).inFlight).toBe(2);

    const started = performance.now();
    const refused = await g.fetch('in', '/3');
    expect(performance.now() - started).toBeLessThan(500);
    expectProblem(refused, 503, 'overloaded');
    expect(refused.json().detail).toBe("upstream 'app' already has 2 requests in flight (maxConcurrent)");
    expect(up.traffic()).toBe(2);

    up.state.held.shift()!();
    expect((await first[0]!).status).toBe(200);
    const again = g.fetch('in', '/4');
    await eventually(() => up.traffic() === 3);
    for (const release of up.state.held) release();
    expect((await again).status).toBe(200);
    expect((await first[1]!).status).toBe(200);
  });
});

describe('health checks', () => {
  it('takes an endpoint that fails its health checks out of rotation and brings it back when it passes', async () => {
    const [a, b] = await Promise.all([named('a'), named('b')]);
    const g = await startGatehouse(
      config(`endpoints: [${a.url}, ${b.url}]\nhealthCheck: { path: /healthz, interval: 100ms, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 2 }`),
    );
    await eventually(() => a.received.some((r) => r.url === '/healthz') && b.received.some((r) => r.url === '/healthz'));
    expect(await healthyGauge(g, a)).toBe(1);

    a.state.healthy = false;
    await eventually(async () => (await endpointView(g, a)).healthy === false);
    expect(await endpointView(g, a)).toMatchObject({ healthy: false, ejected: false });
    expect(await healthyGauge(g, a)).toBe(0);
    expect(g.log.json.some((l) => l.msg === 'endpoint unhealthy' && l.endpoint === a.url)).toBe(true);
    const before = a.traffic();
    expect(await texts(g, 6)).toEqual(['b', 'b', 'b', 'b', 'b', 'b']);
    expect(a.traffic()).toBe(before);

    a.state.healthy = true;
    await eventually(async () => (await endpointView(g, a)).healthy === true);
    expect(await healthyGauge(g, a)).toBe(1);
    expect((await texts(g, 4)).sort()).toEqual(['a', 'a', 'b', 'b']);
  });

  it('answers 503 no_healthy_upstream when every endpoint fails its health checks', async () => {
    const a = await named('a');
    a.state.healthy = false;
    const g = await startGatehouse(config(`endpoints: [${a.url}]\nhealthCheck: { path: /healthz, interval: 100ms, timeout: 500ms, unhealthyThreshold: 1 }`));
    await eventually(async () => (await endpointView(g, a)).healthy === false);
    const res = await g.fetch('in', '/x');
    expectProblem(res, 503, 'no_healthy_upstream');
    expect(a.traffic()).toBe(0);
  });

  it('counts a check that times out as failed', async () => {
    let stalled = false;
    const up = await startUpstream((req, res, body) => {
      if (req.url === '/healthz' && stalled) return; // never answers
      return reply(200, 'ok')(req, res, body);
    });
    const g = await startGatehouse(config(`endpoints: [${up.url}]\nhealthCheck: { path: /healthz, interval: 100ms, timeout: 200ms, unhealthyThreshold: 2 }`));
    await eventually(() => up.received.some((r) => r.url === '/healthz'));
    stalled = true;
    await eventually(async () => (await upstreamView(g)).endpoints[0].healthy === false);
  });

  it('keeps health state across a reload of an unchanged upstream, and stops the checks of a retired one', async () => {
    const [a, b] = await Promise.all([named('a'), named('b')]);
    const upstream = (path: string) =>
      `endpoints: [${a.url}, ${b.url}]\nhealthCheck: { path: ${path}, interval: 100ms, timeout: 500ms, unhealthyThreshold: 1, healthyThreshold: 50 }`;
    a.state.healthy = false;
    const g = await startGatehouse(config(upstream('/healthz')));
    await eventually(async () => (await endpointView(g, a)).healthy === false);

    g.write(config(upstream('/healthz'), '  - { name: other, listener: in, match: { pathPrefix: /other }, upstream: app }'));
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect((await endpointView(g, a)).healthy).toBe(false); // would take 50 passed checks to come back

    g.write(config(upstream('/ready')));
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect((await endpointView(g, a)).healthy).toBe(true); // a new runtime starts healthy
    await eventually(() => b.received.some((r) => r.url === '/ready'));
    const oldChecks = b.received.filter((r) => r.url === '/healthz').length;
    const newChecks = b.received.filter((r) => r.url === '/ready').length;
    await eventually(() => b.received.filter((r) => r.url === '/ready').length >= newChecks + 3); // three intervals later
    expect(b.received.filter((r) => r.url === '/healthz').length).toBe(oldChecks);
    // a retired checker left running would fail its checks (its client is closed) and say so
    expect(g.log.json.filter((l) => l.msg === 'endpoint unhealthy' && l.endpoint === b.url)).toEqual([]);
  });
});

describe('passive ejection', () => {
  it('ejects an endpoint after 5 failures in a row in live traffic, and restores it after the ejection time', async () => {
    const otlp = await startOtlpReceiver();
    const bad = await named('bad', { status: 502 });
    const good = await named('good');
    const g = await startGatehouse(
      config(`endpoints: [${bad.url}, ${good.url}]\nejection: { baseTime: 1s }`, `telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`),
    );
    const seen = await texts(g, 10); // round-robin: bad gets 5
    expect(seen.filter((t) => t === 'bad')).toHaveLength(5);
    expect(await endpointView(g, bad)).toMatchObject({ healthy: true, ejected: true });
    expect(await healthyGauge(g, bad)).toBe(0);
    expect(await texts(g, 4)).toEqual(['good', 'good', 'good', 'good']);
    expect(bad.traffic()).toBe(5);

    await eventually(async () => (await endpointView(g, bad)).ejected === false, 5_000);
    expect(await healthyGauge(g, bad)).toBe(1);
    expect((await texts(g, 2)).sort()).toEqual(['bad', 'good']);

    await g.stop();
    const events = otlp.spans.filter((s) => s.kind === SPAN_KIND.SERVER).flatMap((s) => s.events.filter((e) => e.name === 'gatehouse.endpoint.ejected'));
    expect(events).toEqual([{ name: 'gatehouse.endpoint.ejected', attributes: { 'gatehouse.upstream': 'app', 'gatehouse.endpoint': bad.url } }]);
    expect(g.log.json.some((l) => l.msg === 'endpoint ejected' && /out of rotation for 1000ms/.test(l.detail))).toBe(true);
    expect(g.log.json.some((l) => l.msg === 'endpoint restored' && l.endpoint === bad.url)).toBe(true);
  });

  it('doubles the ejection time when an endpoint is ejected again soon after', async () => {
    const bad = await named('bad', { status: 500 });
    const good = await named('good');
    const g = await startGatehouse(config(`endpoints: [${bad.url}, ${good.url}]\nejection: { consecutiveFailures: 2, baseTime: 300ms, maxTime: 10s }`));
    await texts(g, 4);
    expect((await endpointView(g, bad)).ejected).toBe(true);
    await eventually(async () => (await endpointView(g, bad)).ejected === false, 5_000);
    await texts(g, 4);
    expect((await endpointView(g, bad)).ejected).toBe(true);
    const details = g.log.json.filter((l) => l.msg === 'endpoint ejected').map((l) => /for (\d+)ms/.exec(l.detail)?.[1]);
    expect(details).toEqual(['300', '600']);
  });

  it('never ejects more than half of the endpoints, nor the last one', async () => {
    const [a, b] = await Promise.all([named('a', { status: 500 }), named('b', { status: 500 })]);
    const g = await startGatehouse(config(`endpoints: [${a.url}, ${b.url}]\nejection: { consecutiveFailures: 2 }`));
    await texts(g, 10);
    const view = await upstreamView(g);
    expect(view.endpoints.filter((e: { ejected: boolean }) => e.ejected)).toHaveLength(1);
    expect((await g.fetch('in', '/x')).status).toBe(500); // still answered by the one left

    const solo = await named('solo', { status: 500 });
    const g2 = await startGatehouse(config(`endpoints: [${solo.url}]`));
    await texts(g2, 8);
    expect((await upstreamView(g2)).endpoints[0]).toMatchObject({ ejected: false });
    expect(solo.traffic()).toBe(8);
  });

  it('does not count 4xx answers as failures, and can be turned off', async () => {
    const [a, b] = await Promise.all([named('a', { status: 404 }), named('b')]);
    const g = await startGatehouse(config(`endpoints: [${a.url}, ${b.url}]\nejection: { consecutiveFailures: 2 }`));
    await texts(g, 8);
    expect((await endpointView(g, a)).ejected).toBe(false);

    const [c, d] = await Promise.all([named('c', { status: 503 }), named('d')]);
    const g2 = await startGatehouse(config(`endpoints: [${c.url}, ${d.url}]\nejection: false`));
    await texts(g2, 20);
    expect((await endpointView(g2, c)).ejected).toBe(false);
    expect(c.traffic()).toBe(10);
  });
});
