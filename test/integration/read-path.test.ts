import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { delay, reply, reset, stall, startUpstream, type Reply } from '../helpers/upstream.js';

/** A gatehouse with one route `r` on listener `in` to upstream `app`. */
function config(endpoints: string[], route: string, extra = ''): string {
  return `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${endpoints.join(', ')}] } }
routes:
  - name: r
    listener: in
    match: { pathPrefix: / }
    upstream: app
${route
  .trim()
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
${extra}`;
}

/** The upstream holds each answer a second: long enough for every concurrent request to arrive. */
const slow = (then: Reply): Reply => delay(1_000, then);

describe('coalescing', () => {
  it('20 concurrent identical GETs to a slow upstream make one upstream request; all get its answer', async () => {
    const up = await startUpstream(slow(reply(200, 'rates: 4.90 EUR', { 'cache-control': 'max-age=60' })));
    const g = await startGatehouse(config([up.url], 'cache: {}\ncoalesce: true'));
    const answers = await Promise.all(Array.from({ length: 20 }, () => g.fetch('in', '/shipping/rates?to=DE')));
    expect(up.received).toHaveLength(1);
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.text).toBe('rates: 4.90 EUR');
    }
    const statuses = answers.map((a) => a.headers['cache-status']);
    expect(statuses.filter((s) => s === 'gatehouse; fwd=miss; stored')).toHaveLength(1);
    expect(statuses.filter((s) => s === 'gatehouse; fwd=miss; collapsed')).toHaveLength(19);
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_coalesced_requests_total', { route: 'r' })).toBe(19);
  });

  it('coalesces without a cache too, and shares a failure of the upstream rather than repeating it', async () => {
    const up = await startUpstream([slow(reply(200, 'once', { 'cache-control': 'no-store' })), slow(reset)]);
    const g = await startGatehouse(config([up.url], 'coalesce: true'));
    const first = await Promise.all(Array.from({ length: 10 }, () => g.fetch('in', '/x')));
    expect(first.map((a) => a.text)).toEqual(Array(10).fill('once'));
    expect(first[0]!.headers['cache-status']).toBeUndefined(); // not a cache route
    const failed = await Promise.all(Array.from({ length: 10 }, () => g.fetch('in', '/x')));
    expect(failed.map((a) => a.status)).toEqual(Array(10).fill(502));
    expect(up.received).toHaveLength(2);
  });

  it('does not coalesce requests with other credentials, other Vary values, or a body', async () => {
    const up = await startUpstream(slow((req, res) => {
      res.writeHead(200, { vary: 'accept-language' });
      res.end(`${req.headers.authorization ?? '-'} ${req.headers['accept-language'] ?? '-'}`);
    }));
    const g = await startGatehouse(config([up.url], 'coalesce: true'));
    const answers = await Promise.all([
      g.fetch('in', '/me', { headers: { authorization: 'Bearer a' } }),
      g.fetch('in', '/me', { headers: { authorization: 'Bearer b' } }),
      g.fetch('in', '/page', { headers: { 'accept-language': 'en' } }),
      g.fetch('in', '/page', { headers: { 'accept-language': 'fr' } }),
      g.fetch('in', '/page', { method: 'POST', body: 'x' }),
    ]);
    expect(answers.map((a) => a.text)).toEqual(['Bearer a -', 'Bearer b -', '- en', '- fr', '- -']);
    // /page en and fr: the fr request waited for en's answer, saw it varies, and went on its own
    expect(up.received).toHaveLength(5);
  });

  it('each waiting request keeps its own route timeout', async () => {
    const up = await startUpstream(slow(reply(200, 'ok')));
    const g = await startGatehouse(config([up.url], 'coalesce: true\ntimeout: 300ms'));
    const answers = await Promise.all(Array.from({ length: 5 }, () => g.fetch('in', '/t')));
    // the route timeout passed for all of them: each gets its own 504, one upstream request
    expect(answers.map((a) => a.status)).toEqual(Array(5).fill(504));
    expect(up.received).toHaveLength(1);
  });
});

describe('hedging', () => {
  it('sends a second try to the other endpoint when the first is slow; the first answer wins and the slow try is aborted', async () => {
    const otlp = await startOtlpReceiver();
    const slowEp = await startUpstream(stall);
    const fast = await startUpstream(reply(200, 'fast'));
    const g = await startGatehouse(config([slowEp.url, fast.url], 'hedge: { after: 50ms, max: 1 }\ntimeout: 5s', `telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`));
    for (let i = 0; i < 4; i++) {
      const started = performance.now();
      const res = await g.fetch('in', `/q/${i}`);
      expect(res.status).toBe(200);
      expect(res.text).toBe('fast');
      expect(performance.now() - started).toBeLessThan(3_000);
    }
    // round robin, two picks per request (the try and its hedge): every first try met the stalled endpoint
    expect(slowEp.received).toHaveLength(4);
    expect(fast.received).toHaveLength(4);
    await eventually(() => slowEp.closedEarly.length === 4);
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_hedges_total', { route: 'r', result: 'won' })).toBe(4);
    await g.stop();
    const hedged = String(slowEp.received[0]!.headers.traceparent).split('-')[1]!;
    const clients = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.CLIENT && s.traceId === hedged, 2);
    expect(clients.map((s) => s.attributes['http.request.resend_count'] ?? 0).sort()).toEqual([0, 1]);
    const server = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER && s.traceId === hedged);
    expect(server[0]!.events.find((e) => e.name === 'gatehouse.hedge')?.attributes).toMatchObject({ 'gatehouse.hedge.result': 'won' });
  });

  it('the original try may still win: the hedge is aborted and counted lost', async () => {
    let n = 0;
    const up = await startUpstream(async (req, res) => {
      n++;
      if (n === 1) await new Promise((r) => setTimeout(r, 150)); // the first try answers after the hedge went out
      else await new Promise((r) => setTimeout(r, 3_000));
      res.writeHead(200);
      res.end(`try ${n}`);
    });
    const g = await startGatehouse(config([up.url], 'hedge: { after: 50ms }'));
    const res = await g.fetch('in', '/one');
    expect(res.text).toBe('try 2'); // n counts requests received: the first try answers with the second value
    expect(up.received).toHaveLength(2);
    await eventually(() => up.closedEarly.length === 1);
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_hedges_total', { route: 'r', result: 'lost' })).toBe(1);
  });

  it('never hedges a POST', async () => {
    const up = await startUpstream(delay(200, reply(200, 'ok')));
    const g = await startGatehouse(config([up.url], 'hedge: { after: 20ms, max: 2 }'));
    expect((await g.fetch('in', '/pay', { method: 'POST', body: '{}' })).status).toBe(200);
    expect(up.received).toHaveLength(1);
  });
});
