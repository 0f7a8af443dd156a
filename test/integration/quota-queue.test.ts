import { request as httpRequest } from 'node:http';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request, type Response } from '../helpers/http.js';
import { startOtlpReceiver, SPAN_KIND } from '../helpers/otlp.js';
import { echo, reply, startUpstream, type Reply } from '../helpers/upstream.js';
import { sample, scrape } from '../helpers/metrics.js';

const queueDepth = async (g: TestGatehouse, quota: string): Promise<number> =>
  (await request(g.admin('/admin/quotas'))).json().quotas[quota]?.queue?.depth ?? 0;

/** Sends a request and waits until the quota's queue holds `depth` requests; `answer` is its response. */
async function queued(g: TestGatehouse, path: string, quota: string, depth: number): Promise<{ answer: Promise<Response> }> {
  const answer = g.fetch('in', path);
  answer.catch(() => undefined);
  await eventually(async () => (await queueDepth(g, quota)) === depth);
  return { answer };
}

/** Two routes of different priority sharing one outbound quota, as docs/quotas.md shows. */
const shared = (upstream: string, quota: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { provider: { endpoints: [${upstream}], maxConnections: 1 } }
quotas:
  provider-api: ${quota}
routes:
  - { name: checkout, listener: in, match: { pathPrefix: /high }, upstream: provider, quota: [provider-api], priority: high }
  - { name: sync, listener: in, match: { pathPrefix: /normal }, upstream: provider, quota: [provider-api] }
  - { name: inventory, listener: in, match: { pathPrefix: /low }, upstream: provider, quota: [provider-api], priority: low }
`;

describe('quota queues', () => {
  it('holds requests instead of refusing them and releases them strictly by priority, FIFO within a class', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(shared(up.url, '{ limit: 1, per: 1s, onExceed: queue, maxWait: 20s }'));
    expect((await g.fetch('in', '/normal/0')).status).toBe(200); // takes the only token
    const waiting = [
      await queued(g, '/low/1', 'provider-api', 1),
      await queued(g, '/normal/2', 'provider-api', 2),
      await queued(g, '/low/3', 'provider-api', 3),
      await queued(g, '/high/4', 'provider-api', 4),
    ];
    const answers = await Promise.all(waiting.map((w) => w.answer));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(up.received.map((r) => r.url)).toEqual(['/normal/0', '/high/4', '/normal/2', '/low/1', '/low/3']);
    // a released request carries the bucket's state at its release
    expect(answers[3]!.headers.ratelimit).toBe('"provider-api";r=0;t=1');
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'inventory', result: 'queued' })).toBe(2);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_decisions_total', { route: 'inventory', result: 'allowed' })).toBe(2);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_queue_depth', { quota: 'provider-api' })).toBe(0);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_queue_wait_seconds_count', { quota: 'provider-api', result: 'allowed' })).toBe(4);
  });

  it('answers 429 at once when the queue is full (maxQueue)', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(shared(up.url, '{ limit: 1, per: 2s, onExceed: queue, maxQueue: 1, maxWait: 10s }'));
    expect((await g.fetch('in', '/normal')).status).toBe(200);
    const waiting = await queued(g, '/normal', 'provider-api', 1);
    const full = await g.fetch('in', '/high');
    expect(full.status).toBe(429);
    expect(full.headers['gatehouse-error']).toBe('rate_limited');
    expect(Number(full.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(full.json().detail).toContain("the queue of quota 'provider-api' is full");
    expect((await waiting.answer).status).toBe(200);
  });

  it('answers 429 once maxWait has passed without a token, and at once when the wait is known to be longer', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(shared(up.url, '{ limit: 1, per: 1s, onExceed: queue, maxWait: 1500ms }'));
    expect((await g.fetch('in', '/normal')).status).toBe(200);
    const first = await queued(g, '/normal/a', 'provider-api', 1); // its token comes at 1 s
    const start = performance.now();
    const second = await queued(g, '/normal/b', 'provider-api', 2); // its token would come at 2 s
    expect((await first.answer).status).toBe(200);
    const late = await second.answer;
    const waitedMs = performance.now() - start;
    expect(late.status).toBe(429);
    expect(late.json().detail).toBe("no capacity in quota 'provider-api' within its maxWait of 1500ms; retry in 1s");
    expect(waitedMs).toBeGreaterThanOrEqual(1400);
    expect(up.received.map((r) => r.url)).toEqual(['/normal', '/normal/a']);

    const g2 = await startGatehouse(shared(up.url, '{ limit: 1, per: 1m, onExceed: queue, maxWait: 2s }'));
    expect((await g2.fetch('in', '/normal')).status).toBe(200);
    const t0 = performance.now();
    const hopeless = await g2.fetch('in', '/normal'); // the next token is a minute away
    expect(hopeless.status).toBe(429);
    expect(hopeless.headers['retry-after']).toBe('60');
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('lets a client that disconnects leave the queue at once, and never forwards its request', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(shared(up.url, '{ limit: 1, per: 2s, onExceed: queue, maxWait: 20s }'));
    expect((await g.fetch('in', '/normal')).status).toBe(200);
    const client = httpRequest(g.url('in') + '/low/gone', { agent: false });
    client.on('error', () => undefined);
    client.end();
    await eventually(async () => (await queueDepth(g, 'provider-api')) === 1);
    client.destroy();
    await eventually(async () => (await queueDepth(g, 'provider-api')) === 0, 1000);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_ratelimit_queue_wait_seconds_count', { quota: 'provider-api', result: 'cancelled' })).toBe(1);
    // the next request takes the token the leaver would have had
    const next = await queued(g, '/low/next', 'provider-api', 1);
    expect((await next.answer).status).toBe(200);
    expect(up.received.map((r) => r.url)).toEqual(['/normal', '/low/next']);
    expect(g.accessLog.json.find((l) => l.path === '/low/gone')).toMatchObject({ status: 499 });
  });
});

describe('quota telemetry', () => {
  it('records decisions and queue waits as span events on the server span', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream(echo);
    const g = await startGatehouse(
      shared(up.url, '{ limit: 1, per: 1s, onExceed: queue, maxWait: 10s }') + `telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }\n`,
    );
    expect((await g.fetch('in', '/normal/first')).status).toBe(200);
    const waiting = await queued(g, '/high/second', 'provider-api', 1);
    expect((await waiting.answer).status).toBe(200);
    const [first] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER && s.attributes['gatehouse.route'] === 'sync');
    expect(first!.events).toEqual([{ name: 'gatehouse.quota.decision', attributes: { 'gatehouse.quota': 'provider-api', 'gatehouse.quota.result': 'allowed' } }]);
    const [second] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER && s.attributes['gatehouse.route'] === 'checkout');
    expect(second!.events.map((e) => e.name)).toEqual(['gatehouse.quota.queued', 'gatehouse.quota.released', 'gatehouse.quota.decision']);
    expect(second!.events[0]!.attributes['gatehouse.quota.wait_estimate_ms']).toBeGreaterThan(0);
    expect(second!.events[1]!.attributes['gatehouse.quota.waited_ms']).toBeGreaterThan(0);
  });
});

describe('limits announced by the upstream', () => {
  /** Answers the first request with `first`, every later one with 200. */
  const firstThen = (first: Reply): Reply[] => [first, echo];

  it("pauses new requests for as long as a 429's Retry-After says, answering 429 on a rejecting route", async () => {
    const up = await startUpstream(firstThen(reply(429, 'slow down', { 'retry-after': '1' })));
    const g = await startGatehouse(shared(up.url, '{ limit: 100, per: 1s }'));
    const throttled = await g.fetch('in', '/normal');
    const pausedAt = performance.now();
    expect(throttled.status).toBe(429); // the provider's own answer, passed through
    expect(throttled.headers['gatehouse-error']).toBeUndefined();
    const held = await g.fetch('in', '/high');
    expect(held.status).toBe(429);
    expect(held.headers['gatehouse-error']).toBe('rate_limited');
    expect(held.headers['retry-after']).toBe('1');
    // like every answer of a quota route: the policy, and the global limit spent until the reset
    expect(held.headers['ratelimit-policy']).toBe('"provider-api";q=100;w=1');
    expect(held.headers.ratelimit).toBe('"provider-api";r=0;t=1');
    expect(held.json().detail).toContain("upstream 'provider' announced a limit (429 Retry-After)");
    expect(up.received).toHaveLength(1);
    const view = (await request(g.admin('/admin/quotas'))).json();
    expect(view.upstreams.provider).toMatchObject({ source: '429 Retry-After' });
    expect(view.upstreams.provider.pausedForMs).toBeGreaterThan(0);
    await eventually(async () => (await g.fetch('in', '/normal')).status === 200, 5000, 50);
    expect(performance.now() - pausedAt).toBeGreaterThanOrEqual(900);
    expect(g.log.all).toContain('upstream announced a rate limit');
  });

  it('holds new requests in the queue during the pause on a queueing route, then forwards them in priority order', async () => {
    const up = await startUpstream(firstThen(reply(200, 'ok', { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1' })));
    const g = await startGatehouse(shared(up.url, '{ limit: 100, per: 1s, onExceed: queue, maxWait: 10s }'));
    expect((await g.fetch('in', '/normal/0')).status).toBe(200);
    const pausedAt = performance.now();
    const low = await queued(g, '/low/1', 'provider-api', 1);
    const high = await queued(g, '/high/2', 'provider-api', 2);
    expect((await low.answer).status).toBe(200);
    expect((await high.answer).status).toBe(200);
    expect(performance.now() - pausedAt).toBeGreaterThanOrEqual(900);
    expect(up.received.map((r) => r.url)).toEqual(['/normal/0', '/high/2', '/low/1']);
  });

  it('does not let one client of a per-client quota pause everyone (inbound 429s are not a provider limit)', async () => {
    const up = await startUpstream(firstThen(reply(429, 'this user is throttled', { 'retry-after': '60' })));
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { store: { endpoints: [${up.url}] } }
routes:
  - { name: api, listener: in, match: { pathPrefix: / }, upstream: store, quota: [{ limit: 100, per: 1s, key: ip }] }
`);
    expect((await g.fetch('in', '/a')).status).toBe(429);
    expect((await g.fetch('in', '/b')).status).toBe(200);
  });
});
