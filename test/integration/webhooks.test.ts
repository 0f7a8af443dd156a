import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { sign as signGithub } from '@octokit/webhooks-methods';
import { describe, expect, it } from 'vitest';
import Stripe from 'stripe';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { onCleanup } from '../helpers/cleanup.js';
import { closedPort, reply, startUpstream, type Received } from '../helpers/upstream.js';

const SECRET = 'whsec_test_secret_for_gatehouse';
const stripe = new Stripe('sk_test_unused');

const stripeEvent = (id: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id, object: 'event', type: 'payment_intent.succeeded', data: { object: { id: 'pi_1', amount: 4200 } }, ...extra });

const signStripe = (payload: string, secret = SECRET, timestamp?: number) =>
  stripe.webhooks.generateTestHeaderString({ payload, secret, ...(timestamp === undefined ? {} : { timestamp }) });

/** A store that comes up late, on the port gatehouse has been trying; answers 200 and records. */
async function startUpstreamOn(port: number): Promise<{ received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) });
      res.writeHead(200).end('ok');
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
  return { received };
}

function stripeYaml(upstream: string, extra = '') {
  return `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { store: { endpoints: [${upstream}] } }
routes:
  - name: stripe-webhooks
    listener: in
    match: { pathPrefix: /webhooks/stripe, methods: [POST] }
    upstream: store
    rewrite: { prefix: /hooks/stripe }
    webhook:
      provider: stripe
      secret: ${SECRET}
      tolerance: 5m
      delivery: { attempts: 3, backoff: { base: 50ms, max: 200ms } }
${extra}`;
}

describe('webhooks: stripe end to end', () => {
  it('answers 200 once stored and delivers the original body and headers plus gatehouse-webhook-* to the store', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(stripeYaml(up.url));
    const body = stripeEvent('evt_1');
    const sig = signStripe(body);
    const res = await g.fetch('in', '/webhooks/stripe', { method: 'POST', body, headers: { 'content-type': 'application/json', 'stripe-signature': sig } });
    expect(res.status).toBe(200);
    expect(res.headers['gatehouse-webhook']).toBe('accepted');
    const id = res.headers['gatehouse-webhook-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await eventually(() => up.received.length === 1);
    const got = up.received[0]!;
    expect(got.method).toBe('POST');
    expect(got.url).toBe('/hooks/stripe');
    expect(got.body.toString()).toBe(body);
    expect(got.headers['stripe-signature']).toBe(sig);
    expect(got.headers['gatehouse-webhook-id']).toBe(id);
    expect(got.headers['gatehouse-webhook-event-id']).toBe('evt_1');
    expect(got.headers['gatehouse-webhook-attempt']).toBe('1');
    expect(got.headers['content-type']).toBe('application/json');
    // the store can verify the signature again over the bytes it received
    expect(() => stripe.webhooks.constructEvent(got.body, got.headers['stripe-signature'] as string, SECRET)).not.toThrow();
  });
});

const post = (g: Awaited<ReturnType<typeof startGatehouse>>, body: string, headers: Record<string, string>, path = '/webhooks/stripe') =>
  g.fetch('in', path, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

const metricsText = async (g: Awaited<ReturnType<typeof startGatehouse>>) => (await request(g.admin('/metrics'))).text;

describe('webhooks: refusals', () => {
  it('answers 401 invalid_signature for a tampered body, a stale timestamp and a missing header, and stores nothing', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(stripeYaml(up.url));
    const body = stripeEvent('evt_bad');
    const cases: { body: string; headers: Record<string, string>; detail: RegExp }[] = [
      { body: body.replace('4200', '1'), headers: { 'stripe-signature': signStripe(body) }, detail: /no v1 signature matches the body/ },
      { body, headers: { 'stripe-signature': signStripe(body, SECRET, Math.floor(Date.now() / 1000) - 600) }, detail: /outside the replay window/ },
      { body, headers: {}, detail: /Stripe-Signature header is missing/ },
    ];
    for (const c of cases) {
      const res = await post(g, c.body, c.headers);
      expect(res.status).toBe(401);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.headers['gatehouse-error']).toBe('invalid_signature');
      expect(res.json()).toMatchObject({ type: 'urn:gatehouse:error:invalid_signature', status: 401, code: 'invalid_signature', route: 'stripe-webhooks' });
      expect(res.json().detail).toMatch(c.detail);
    }
    const recent = (await request(g.admin('/admin/webhooks/recent?route=stripe-webhooks'))).json();
    expect(recent.events).toEqual([]);
    const text = await metricsText(g);
    expect(text).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="invalid"\} 3/);
    // every result is exported from the start, so increase() alerts see the first dead letter
    expect(text).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="dead"\} 0/);
    expect(text).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="delivered"\} 0/);
    expect(g.accessLog.json.filter((l) => l.error === 'invalid_signature')).toHaveLength(3);
    expect(up.received).toHaveLength(0);
    expect(g.log.all + g.accessLog.all).not.toContain(SECRET);
    const config = (await request(g.admin('/admin/config'))).text;
    expect(config).not.toContain(SECRET);
  });

  it('answers 413 payload_too_large for a body over maxBodySize, with or without Content-Length', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(stripeYaml(up.url).replace('    webhook:', '    maxBodySize: 1kb\n    webhook:'));
    const body = stripeEvent('evt_big', { padding: 'x'.repeat(2000) });
    const sized = await post(g, body, { 'stripe-signature': signStripe(body) });
    expect(sized.status).toBe(413);
    expect(sized.headers['gatehouse-error']).toBe('payload_too_large');
    const chunked = await g.fetch('in', '/webhooks/stripe', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'stripe-signature': signStripe(body) },
    });
    expect(chunked.status).toBe(413);
    expect(chunked.headers['content-type']).toBe('application/problem+json');
    expect(chunked.json()).toMatchObject({ code: 'payload_too_large', status: 413 });
    expect(up.received).toHaveLength(0);
  });
  it('answers 503 store_unavailable with Retry-After when the event cannot be stored, so the provider retries', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const redisPort = await closedPort();
    const g = await startGatehouse(
      stripeYaml(up.url)
        .replace('tolerance: 5m', 'tolerance: 5m\n      dedupe: { store: shared }')
        .replace('version: 1', `version: 1\nstores: { shared: { type: redis, url: "redis://127.0.0.1:${redisPort}" } }`),
    );
    const body = stripeEvent('evt_nowhere');
    const res = await post(g, body, { 'stripe-signature': signStripe(body) });
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('store_unavailable');
    expect(res.headers['retry-after']).toBe('5');
    expect(res.json()).toMatchObject({ type: 'urn:gatehouse:error:store_unavailable', status: 503, code: 'store_unavailable', route: 'stripe-webhooks' });
    expect(up.received).toHaveLength(0);
    expect(g.log.all).toMatch(/could not store a webhook event/);
  });
});

describe('webhooks: de-duplication', () => {
  it('answers a repeated event id 200 with gatehouse-webhook: duplicate and never forwards it again', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(stripeYaml(up.url));
    const body = stripeEvent('evt_twice');
    const first = await post(g, body, { 'stripe-signature': signStripe(body) });
    expect(first.headers['gatehouse-webhook']).toBe('accepted');
    await eventually(() => up.received.length === 1);
    // the provider retries with a fresh signature: same event id
    const again = await post(g, body, { 'stripe-signature': signStripe(body) });
    expect(again.status).toBe(200);
    expect(again.headers['gatehouse-webhook']).toBe('duplicate');
    expect(again.json()).toMatchObject({ status: 'duplicate', eventId: 'evt_twice' });
    // a marker event proves the worker ran after the duplicate
    const marker = stripeEvent('evt_marker');
    await post(g, marker, { 'stripe-signature': signStripe(marker) });
    await eventually(() => up.received.length === 2);
    expect(up.received.map((r) => r.headers['gatehouse-webhook-event-id'])).toEqual(['evt_twice', 'evt_marker']);
    const text = await metricsText(g);
    expect(text).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="duplicate"\} 1/);
    expect(text).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="verified"\} 3/);
    expect(text).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="delivered"\} 2/);
  });
});

describe('webhooks: durable delivery', () => {
  it('keeps retrying while the store is down and delivers once it is back', async () => {
    const port = await closedPort();
    const g = await startGatehouse(stripeYaml(`http://127.0.0.1:${port}`).replace('attempts: 3, backoff: { base: 50ms, max: 200ms }', 'attempts: 50, backoff: { base: 50ms, max: 100ms }'));
    const body = stripeEvent('evt_later');
    expect((await post(g, body, { 'stripe-signature': signStripe(body) })).status).toBe(200);
    const recent = async () => (await request(g.admin('/admin/webhooks/recent?route=stripe-webhooks'))).json().events[0];
    await eventually(async () => (await recent()).attempts >= 3);
    expect(await recent()).toMatchObject({ state: expect.stringMatching(/pending|delivering/), lastError: expect.stringMatching(/ECONNREFUSED|connect/) });
    const up = await startUpstreamOn(port);
    await eventually(() => up.received.length === 1, 10_000);
    expect(Number(up.received[0]!.headers['gatehouse-webhook-attempt'])).toBeGreaterThan(3);
    await eventually(async () => (await recent()).state === 'delivered');
    // delivered: the failures before it are history, not its last error
    expect((await recent()).lastError).toBeNull();
    const text = await metricsText(g);
    expect(text).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="retried"\} \d+/);
    expect(text).toMatch(/gatehouse_webhook_delivery_lag_seconds_count\{route="stripe-webhooks"\} 1/);
    expect(text).toMatch(/gatehouse_webhook_pending\{route="stripe-webhooks"\} 0/);
    // one access-log line per delivery attempt, besides the intake's own line
    const lines = g.accessLog.json;
    expect(lines.filter((l) => l.kind === undefined && l.path === '/webhooks/stripe')).toHaveLength(1);
    const deliveries = lines.filter((l) => l.kind === 'webhook-delivery');
    expect(deliveries.length).toBeGreaterThan(3);
    expect(deliveries.at(-1)).toMatchObject({ route: 'stripe-webhooks', status: 200, result: 'delivered', eventId: 'evt_later', path: '/hooks/stripe', error: null });
    // the access log's shape: every key, null where it does not apply, the §4 code in `error`
    expect(deliveries[0]).toMatchObject({ status: null, error: 'bad_gateway', client: null, traceId: null, upstream: 'store', result: 'retried' });
    const keys = ['time', 'route', 'method', 'path', 'status', 'durationMs', 'upstream', 'attempts', 'retrySkipped', 'traceId', 'requestId', 'error', 'client'];
    for (const line of deliveries) expect(Object.keys(line).slice(0, keys.length)).toEqual(keys);
  });

  it('dead-letters an event the store never takes, lists it, and replays it on request', async () => {
    const port = await closedPort();
    const g = await startGatehouse(stripeYaml(`http://127.0.0.1:${port}`).replace('attempts: 3', 'attempts: 2'));
    const body = stripeEvent('evt_dead');
    const accepted = await post(g, body, { 'stripe-signature': signStripe(body) });
    const id = String(accepted.headers['gatehouse-webhook-id']);
    const dead = async () => (await request(g.admin('/admin/webhooks/dead'))).json();
    const listed = await eventually(async () => (await dead()).events[0]);
    expect(listed).toMatchObject({ id, route: 'stripe-webhooks', provider: 'stripe', eventId: 'evt_dead', attempts: 2 });
    expect(listed.lastError).toMatch(/ECONNREFUSED|connect/);
    expect(new Date(listed.receivedAt).getTime()).toBeGreaterThan(0);
    expect(await metricsText(g)).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="dead"\} 1/);

    const unknown = await request(g.admin('/admin/webhooks/dead/no-such-id/replay'), { method: 'POST' });
    expect(unknown.status).toBe(404);

    const up = await startUpstreamOn(port);
    const replay = await request(g.admin(`/admin/webhooks/dead/${id}/replay`), { method: 'POST' });
    expect(replay.status).toBe(202);
    await eventually(() => up.received.length === 1);
    expect(up.received[0]!.body.toString()).toBe(body);
    expect(up.received[0]!.headers['gatehouse-webhook-id']).toBe(id);
    await eventually(async () => (await dead()).events.length === 0);
  });

  it('delivers events with the same orderBy key one at a time, in arrival order', async () => {
    let failedOnce = false;
    const up = await startUpstream((req, res) => {
      // the first event of customer A fails once: the second must wait for it
      if (req.headers['gatehouse-webhook-event-id'] === 'evt_a1' && !failedOnce) {
        failedOnce = true;
        res.writeHead(503).end();
        return;
      }
      res.writeHead(200).end();
    });
    const g = await startGatehouse(stripeYaml(up.url).replace('attempts: 3,', 'attempts: 5, orderBy: "json:data.object.customer",'));
    const send = async (id: string, customer: string) => {
      const body = stripeEvent(id, { data: { object: { customer } } });
      expect((await post(g, body, { 'stripe-signature': signStripe(body) })).headers['gatehouse-webhook']).toBe('accepted');
    };
    await send('evt_a1', 'cus_A');
    await send('evt_a2', 'cus_A');
    await send('evt_b1', 'cus_B');
    await send('evt_a3', 'cus_A');
    await eventually(() => up.received.length === 5);
    const order = up.received.map((r) => r.headers['gatehouse-webhook-event-id']);
    const a = order.filter((e) => e !== 'evt_b1');
    expect(a).toEqual(['evt_a1', 'evt_a1', 'evt_a2', 'evt_a3']);
    expect(order).toContain('evt_b1');
  });
});

describe('webhooks: upstream credentials', () => {
  const withCredentials = (yaml: string, credentials: string) =>
    yaml.replace(/upstreams: \{ store: \{ endpoints: \[([^\]]+)\] \} \}/, (_m, ep: string) => `upstreams: { store: { endpoints: [${ep}], credentials: ${credentials} } }`);

  it('adds a static credential header to every delivery, never the copy the provider sent', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(withCredentials(stripeYaml(up.url), '{ header: { name: x-store-key, value: "${env:STORE_KEY}" } }'), { env: { STORE_KEY: 'sk-store-91d3' } });
    const body = stripeEvent('evt_cred');
    expect((await post(g, body, { 'stripe-signature': signStripe(body), 'x-store-key': 'from-the-provider' })).status).toBe(200);
    await eventually(() => up.received.length === 1);
    expect(up.received[0]!.headers['x-store-key']).toBe('sk-store-91d3');
    const recent = (await request(g.admin('/admin/webhooks/recent?route=stripe-webhooks'))).text;
    expect(recent).not.toContain('sk-store-91d3');
  });

  it('delivers with an OAuth2 token, and fetches a new one when the store answers 401', async () => {
    const tokens: string[] = [];
    const idp = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        tokens.push(`tok-${tokens.length + 1}`);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: tokens.at(-1), token_type: 'Bearer', expires_in: 3600 }));
      });
    });
    idp.listen(0, '127.0.0.1');
    await once(idp, 'listening');
    onCleanup(() => new Promise<void>((r) => (idp.closeAllConnections(), idp.close(() => r()))));
    const tokenUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}/token`;
    const up = await startUpstream([reply(401), reply(200, 'ok')]);
    const g = await startGatehouse(
      withCredentials(stripeYaml(up.url), `{ oauth2: { tokenUrl: ${tokenUrl}, clientId: store, clientSecret: "\${env:CS}" } }`),
      { env: { CS: 'cs-webhook-secret' } },
    );
    const body = stripeEvent('evt_oauth');
    expect((await post(g, body, { 'stripe-signature': signStripe(body) })).status).toBe(200);
    await eventually(() => up.received.length === 2);
    expect(up.received.map((r) => r.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-2']);
    expect(tokens).toHaveLength(2);
    const recent = async () => (await request(g.admin('/admin/webhooks/recent?route=stripe-webhooks'))).json().events[0];
    await eventually(async () => (await recent()).state === 'delivered');
  });
});

describe('webhooks: admin', () => {
  it('shows recent events with their state, and bodies only where inspect is on', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { store: { endpoints: [${up.url}] } }
stores: { mem: { type: memory } }
routes:
  - name: shopify
    listener: in
    match: { path: /webhooks/shopify }
    upstream: store
    webhook: { provider: shopify, secret: shpss_secret, inspect: true, dedupe: { store: mem } }
  - name: github
    listener: in
    match: { path: /webhooks/github }
    upstream: store
    webhook: { provider: github, secret: gh_secret }
`);
    const body = JSON.stringify({ id: 1, topic: 'orders/create' });
    const hmac = createHmac('sha256', 'shpss_secret').update(body).digest('base64');
    const res = await post(
      g,
      body,
      { 'x-shopify-hmac-sha256': hmac, 'x-shopify-webhook-id': 'wh-1', 'x-shopify-topic': 'orders/create', authorization: 'Basic c2hvcDpwYXNz' },
      '/webhooks/shopify',
    );
    expect(res.status).toBe(200);
    const gh = await post(g, body, { 'x-hub-signature-256': await signGithub('gh_secret', body), 'x-github-delivery': 'gd-1' }, '/webhooks/github');
    expect(gh.status).toBe(200);
    await eventually(() => up.received.length === 2);
    expect(up.received.find((r) => r.headers['x-shopify-webhook-id'] === 'wh-1')!.headers['x-shopify-topic']).toBe('orders/create');

    const shopify = await eventually(async () => {
      const events = (await request(g.admin('/admin/webhooks/recent?route=shopify'))).json().events;
      return events[0]?.state === 'delivered' ? events : undefined;
    });
    expect(shopify).toHaveLength(1);
    expect(shopify[0]).toMatchObject({ route: 'shopify', provider: 'shopify', eventId: 'wh-1', attempts: 1, body });
    expect(shopify[0].headers).toContain('x-shopify-hmac-sha256');
    expect(shopify[0].headers[shopify[0].headers.indexOf('authorization') + 1]).toBe('***');
    const github = await eventually(async () => {
      const events = (await request(g.admin('/admin/webhooks/recent?route=github'))).json().events;
      return events[0]?.state === 'delivered' ? events : undefined;
    });
    expect(github[0]).toMatchObject({ eventId: 'gd-1' });
    expect(github[0].body).toBeUndefined();
    expect(github[0].headers).toBeUndefined();
    expect((await request(g.admin('/admin/webhooks/recent?route=nope'))).status).toBe(404);
    expect((await request(g.admin('/admin/webhooks/recent'))).json().events).toHaveLength(2);
    expect(g.log.all).toMatch(/lost when gatehouse stops \(not durable\)/);
  });

  it('rejects a webhook naming an unknown store with its position', async () => {
    await expect(
      startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { store: { endpoints: [http://127.0.0.1:1] } }
routes:
  - name: hooks
    listener: in
    upstream: store
    webhook: { provider: github, secret: x, dedupe: { store: shared } }
`),
    ).rejects.toThrow(/:9:\d+ routes\[0\]\(hooks\)\.webhook\.dedupe\.store: unknown store "shared"/);
  });
});

describe('webhooks: tracing', () => {
  it('traces the intake as the SERVER span and each delivery attempt as a CLIENT span linked to it', async () => {
    const otlp = await startOtlpReceiver();
    let calls = 0;
    const up = await startUpstream((_req, res) => void res.writeHead(++calls === 1 ? 500 : 200).end());
    const g = await startGatehouse(stripeYaml(up.url).replace('version: 1', `version: 1\ntelemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`));
    const body = stripeEvent('evt_traced');
    const res = await post(g, body, { 'stripe-signature': signStripe(body) });
    const id = res.headers['gatehouse-webhook-id'];
    await eventually(() => up.received.length === 2);
    const [intake] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER && s.attributes['gatehouse.route'] === 'stripe-webhooks');
    expect(intake!.name).toBe('POST /webhooks/stripe/*');
    expect(intake!.events.map((e) => e.name)).toContain('gatehouse.webhook.stored');
    const attempts = await otlp.waitForSpans((s) => s.attributes['gatehouse.webhook.id'] === id, 2);
    expect(attempts.map((s) => [s.kind, s.name, s.attributes['gatehouse.webhook.attempt'], s.attributes['http.response.status_code']]).sort()).toEqual([
      [SPAN_KIND.CLIENT, 'POST', 1, 500],
      [SPAN_KIND.CLIENT, 'POST', 2, 200],
    ]);
    for (const a of attempts) {
      expect(a.links).toEqual([expect.objectContaining({ traceId: intake!.traceId, spanId: intake!.spanId })]);
      expect(a.attributes['gatehouse.webhook.event_id']).toBe('evt_traced');
    }
    // the store sees the delivery attempt's trace context
    const delivered = attempts.find((a) => a.attributes['gatehouse.webhook.attempt'] === 2)!;
    expect(up.received[1]!.headers.traceparent).toBe(`00-${delivered.traceId}-${delivered.spanId}-01`);
  });
});

describe('webhooks: reload', () => {
  it('keeps pending events across a reload and delivers them to the upstream the new config names', async () => {
    const port = await closedPort();
    const up = await startUpstream(reply(200, 'ok'));
    const before = stripeYaml(`http://127.0.0.1:${port}`).replace('attempts: 3, backoff: { base: 50ms, max: 200ms }', 'attempts: 50, backoff: { base: 50ms, max: 100ms }');
    const g = await startGatehouse(before);
    const body = stripeEvent('evt_reload');
    expect((await post(g, body, { 'stripe-signature': signStripe(body) })).status).toBe(200);
    await eventually(async () => (await request(g.admin('/admin/webhooks/recent?route=stripe-webhooks'))).json().events[0]?.attempts >= 2);
    g.write(before.replace(`http://127.0.0.1:${port}`, up.url));
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    await eventually(() => up.received.length === 1);
    expect(up.received[0]!.headers['gatehouse-webhook-event-id']).toBe('evt_reload');
    // a changed webhook block gets a new worker; the store keeps the route's events and id claims
    g.write(before.replace(`http://127.0.0.1:${port}`, up.url).replace('attempts: 50', 'attempts: 7'));
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect((await post(g, body, { 'stripe-signature': signStripe(body) })).headers['gatehouse-webhook']).toBe('duplicate');
    const next = stripeEvent('evt_after_reload');
    await post(g, next, { 'stripe-signature': signStripe(next) });
    await eventually(() => up.received.length === 2);
  });
});
