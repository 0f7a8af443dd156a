import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { closedPort, reply, startUpstream } from '../helpers/upstream.js';

/** A Standard Webhooks secret: whsec_ + base64 of 24 bytes. */
const SECRET = `whsec_${Buffer.from('outbox-callback-secret-24').toString('base64')}`;

const yaml = (upstream: string, delivery: string, extra = '') => `
version: 1
listeners: [{ name: out, address: 127.0.0.1:0 }]
upstreams: { erp: { endpoints: [${upstream}] } }
${extra}
routes:
  - name: erp-orders
    listener: out
    match: { pathPrefix: /erp }
    upstream: erp
    rewrite: { stripPrefix: /erp }
    timeout: 2s
    delivery: ${delivery}
`;

const post = (g: TestGatehouse, path: string, body: string, headers: Record<string, string> = {}) =>
  g.fetch('out', path, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

const message = async (g: TestGatehouse, id: string) => (await request(g.admin(`/admin/outbox/${id}`))).json();

describe('outbox: async', () => {
  it('stores the write, answers 202 with the id and Idempotency-Key, and delivers it through the route with that key', async () => {
    const up = await startUpstream(reply(201, '{"ok":true}', { 'content-type': 'application/json' }));
    const g = await startGatehouse(yaml(up.url, '{ mode: async, backoff: { base: 50ms, max: 100ms } }'));
    const res = await post(g, '/erp/orders?src=shop', '{"order":42}', { 'x-tenant': 'acme' });
    expect(res.status).toBe(202);
    const body = res.json();
    expect(body).toEqual({ id: res.headers['gatehouse-outbox-id'], status: 'pending', idempotencyKey: expect.any(String) });
    expect(res.headers['idempotency-key']).toBe(body.idempotencyKey);
    await eventually(() => up.received.length === 1);
    const got = up.received[0]!;
    expect([got.method, got.url, got.body.toString(), got.headers['x-tenant'], got.headers['idempotency-key']]).toEqual(['POST', '/orders?src=shop', '{"order":42}', 'acme', body.idempotencyKey]);
    await eventually(async () => (await message(g, body.id)).status === 'delivered');
    expect(await message(g, body.id)).toEqual({
      id: body.id,
      route: 'erp-orders',
      status: 'delivered',
      attempts: 1,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      nextAttemptAt: null,
      lastError: null,
      lastStatus: 201,
      idempotencyKey: body.idempotencyKey,
    });
    // a client's own key is kept; reads are always sync
    const own = await post(g, '/erp/orders', '{}', { 'idempotency-key': 'order-43' });
    expect(own.json().idempotencyKey).toBe('order-43');
    const read = await g.fetch('out', '/erp/orders/42');
    expect(read.status).toBe(201);
    const text = await scrape(g.admin('/metrics'));
    expect(sample(text, 'gatehouse_outbox_deliveries_total', { route: 'erp-orders', result: 'accepted' })).toBe(2);
    await eventually(async () => sample(await scrape(g.admin('/metrics')), 'gatehouse_outbox_deliveries_total', { route: 'erp-orders', result: 'delivered' }) === 2);
    expect(sample(text, 'gatehouse_outbox_lag_seconds_count', { route: 'erp-orders' })).toBeGreaterThanOrEqual(1);
  });

  it('is applied once by an idempotent upstream although its answers are lost twice: one Idempotency-Key on every try', async () => {
    const applied = new Map<string, number>();
    const keys: string[] = [];
    const up = await startUpstream((req, res, body) => {
      const key = String(req.headers['idempotency-key']);
      keys.push(key);
      if (!applied.has(key)) applied.set(key, body.length); // applied ...
      if (keys.length <= 2) {
        req.socket.destroy(); // ... but the answer is lost
        return;
      }
      res.writeHead(200).end('{"applied":"once"}');
    });
    const g = await startGatehouse(yaml(up.url, '{ mode: async, backoff: { base: 20ms, max: 50ms } }'));
    const { id, idempotencyKey } = (await post(g, '/erp/refunds', '{"amount":10}')).json();
    await eventually(async () => (await message(g, id)).status === 'delivered');
    expect(keys).toEqual([idempotencyKey, idempotencyKey, idempotencyKey]);
    expect(applied.size).toBe(1);
    expect(await message(g, id)).toMatchObject({ attempts: 3, lastStatus: 200 });
  });

  it('sends a final 4xx to the dead letters at once; retries 408/425/429/5xx, honouring Retry-After', async () => {
    const at: number[] = [];
    const up = await startUpstream((req, res) => {
      const path = req.url!;
      if (path === '/good') at.push(performance.now());
      if (path === '/bad') return void res.writeHead(422).end('{"error":"invalid order"}');
      const n = up.received.filter((r) => r.url === path).length;
      if (n === 1) return void res.writeHead(429, { 'retry-after': '1' }).end();
      if (n === 2) return void res.writeHead(425).end();
      res.writeHead(200).end();
    });
    const g = await startGatehouse(yaml(up.url, '{ mode: async, backoff: { base: 20ms, max: 50ms } }'));
    const bad = (await post(g, '/erp/bad', '{}')).json();
    const good = (await post(g, '/erp/good', '{}')).json();
    await eventually(async () => (await message(g, bad.id)).status === 'dead');
    expect(await message(g, bad.id)).toMatchObject({ attempts: 1, lastStatus: 422, lastError: 'HTTP 422', nextAttemptAt: null });
    await eventually(async () => (await message(g, good.id)).status === 'delivered', 10_000);
    const tries = up.received.filter((r) => r.url === '/good');
    expect(tries).toHaveLength(3);
    // the 429 asked for a second: the next try waited for it (the back-off alone is 50 ms at most)
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(900);
    expect((await message(g, good.id)).attempts).toBe(3);
    const dead = (await request(g.admin('/admin/outbox?status=dead'))).json().messages;
    expect(dead.map((m: any) => m.id)).toEqual([bad.id]);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_outbox_messages', { route: 'erp-orders', status: 'dead' })).toBe(1);
  });

  it('holds the order per key while the head of the line is retried; other keys go on', async () => {
    let failures = 3;
    const up = await startUpstream((req, res) => {
      const body = JSON.parse(up.received.at(-1)!.body.toString()) as { n: string };
      if (body.n === 'A1' && failures-- > 0) return void res.writeHead(503).end();
      res.writeHead(200).end();
    });
    const g = await startGatehouse(yaml(up.url, '{ mode: async, orderBy: "header:x-order-id", backoff: { base: 100ms, max: 200ms } }'));
    for (const [n, key] of [['A1', 'A'], ['A2', 'A'], ['B1', 'B'], ['A3', 'A']]) expect((await post(g, '/erp/o', JSON.stringify({ n }), { 'x-order-id': key! })).status).toBe(202);
    await eventually(() => up.received.length === 7, 10_000);
    const seen = up.received.map((r) => (JSON.parse(r.body.toString()) as { n: string }).n);
    expect(seen.filter((n) => n !== 'A1')).toEqual(['B1', 'A2', 'A3']);
    expect(seen.indexOf('B1')).toBeLessThan(seen.lastIndexOf('A1')); // B did not wait for A
    expect(seen.lastIndexOf('A1')).toBeLessThan(seen.indexOf('A2')); // A2 waited for A1's delivery
  });

  it('dead-letters a message whose maxAge would pass before the next try', async () => {
    const up = await startUpstream(reply(503));
    const g = await startGatehouse(yaml(up.url, '{ mode: async, maxAge: 1s, backoff: { base: 300ms, max: 300ms } }'));
    const { id } = (await post(g, '/erp/x', '{}')).json();
    await eventually(async () => (await message(g, id)).status === 'dead', 5_000);
    const m = await message(g, id);
    expect(m.lastError).toMatch(/maxAge/);
    // tries every 150-300 ms (equal jitter) until one more would end after the 1 s maxAge: at most 7
    expect(m.attempts).toBeGreaterThanOrEqual(1);
    expect(m.attempts).toBeLessThanOrEqual(7);
  });

  it('replays a dead message and cancels a pending one, with the status codes of SPEC §11', async () => {
    let ok = false;
    const up = await startUpstream((req, res) => void res.writeHead(req.url === '/slow' ? 503 : ok ? 200 : 400).end());
    const g = await startGatehouse(yaml(up.url, '{ mode: async, backoff: { base: 5s, max: 5s } }'));
    const dead = (await post(g, '/erp/x', '{}')).json();
    await eventually(async () => (await message(g, dead.id)).status === 'dead');
    const replayOf = (id: string) => request(g.admin(`/admin/outbox/${id}/replay`), { method: 'POST' });
    const cancel = (id: string) => request(g.admin(`/admin/outbox/${id}`), { method: 'DELETE' });
    ok = true;
    const replayed = await replayOf(dead.id);
    expect(replayed.status).toBe(202);
    expect(replayed.json()).toMatchObject({ id: dead.id, status: 'pending', attempts: 0 });
    await eventually(async () => (await message(g, dead.id)).status === 'delivered');
    expect((await replayOf(dead.id)).status).toBe(409); // not dead
    expect((await replayOf('no-such-id')).status).toBe(404);

    const pending = (await post(g, '/erp/slow', '{}')).json();
    await eventually(async () => (await message(g, pending.id)).lastStatus === 503);
    expect((await cancel(pending.id)).status).toBe(204);
    expect(await message(g, pending.id)).toMatchObject({ status: 'cancelled', nextAttemptAt: null });
    expect((await cancel(pending.id)).status).toBe(409);
    expect((await cancel(dead.id)).status).toBe(409);
    expect((await cancel('no-such-id')).status).toBe(404);
    const list = (await request(g.admin('/admin/outbox?route=erp-orders'))).json().messages;
    expect(list.map((m: any) => [m.id, m.status])).toEqual([
      [pending.id, 'cancelled'],
      [dead.id, 'delivered'],
    ]);
    expect((await request(g.admin('/admin/outbox?status=pending'))).json().messages).toEqual([]);
    expect((await request(g.admin('/admin/outbox?status=nope'))).status).toBe(400);
    const tries = up.received.filter((r) => r.url === '/slow').length;
    await new Promise((r) => setTimeout(r, 300));
    expect(up.received.filter((r) => r.url === '/slow').length).toBe(tries); // cancelled: no more tries
  });

  it('answers 503 store_unavailable when the store cannot take the write: nothing accepted, nothing sent', async () => {
    const up = await startUpstream(reply(200));
    const port = await closedPort();
    const g = await startGatehouse(
      yaml(up.url, '{ mode: async, store: shared }', `stores: { shared: { type: redis, url: "redis://127.0.0.1:${port}" } }`),
    );
    const res = await post(g, '/erp/orders', '{"order":1}');
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('store_unavailable');
    expect(res.json()).toMatchObject({ code: 'store_unavailable', status: 503 });
    await new Promise((r) => setTimeout(r, 200));
    expect(up.received).toHaveLength(0);
  });

  it('refuses a body over delivery.maxBodySize with 413', async () => {
    const up = await startUpstream(reply(200));
    const g = await startGatehouse(yaml(up.url, '{ mode: async, maxBodySize: 1kb }'));
    const res = await post(g, '/erp/orders', 'x'.repeat(2_000));
    expect(res.status).toBe(413);
    expect(up.received).toHaveLength(0);
  });

  it('traces each try as a CLIENT span linked to the accepting request\'s SERVER span', async () => {
    const otlp = await startOtlpReceiver();
    let calls = 0;
    const up = await startUpstream((_req, res) => void res.writeHead(++calls === 1 ? 500 : 200).end());
    const g = await startGatehouse(yaml(up.url, '{ mode: async, backoff: { base: 20ms, max: 50ms } }').replace('version: 1', `version: 1\ntelemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`));
    const { id } = (await post(g, '/erp/orders', '{}')).json();
    await eventually(() => up.received.length === 2);
    const [accepting] = await otlp.waitForSpans((s) => s.kind === SPAN_KIND.SERVER && s.attributes['gatehouse.route'] === 'erp-orders');
    expect(accepting!.events.map((e) => e.name)).toContain('gatehouse.outbox.stored');
    const tries = await otlp.waitForSpans((s) => s.attributes['gatehouse.outbox.id'] === id, 2);
    expect(tries.map((s) => [s.kind, s.name, s.attributes['gatehouse.outbox.attempt'], s.attributes['http.response.status_code']]).sort()).toEqual([
      [SPAN_KIND.CLIENT, 'POST', 1, 500],
      [SPAN_KIND.CLIENT, 'POST', 2, 200],
    ]);
    for (const t of tries) expect(t.links).toEqual([expect.objectContaining({ traceId: accepting!.traceId, spanId: accepting!.spanId })]);
  });
});

describe('outbox: fallback', () => {
  it('sends at once; a 5xx or 429 is stored and answered 202, any other answer passes through', async () => {
    const up = await startUpstream((req, res) => {
      const first = up.received.filter((r) => r.url === req.url).length === 1;
      if (req.url === '/down' && first) return void res.writeHead(503).end('down');
      if (req.url === '/limited' && first) return void res.writeHead(429, { 'retry-after': '0' }).end();
      if (req.url === '/invalid') return void res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"bad"}');
      res.writeHead(201).end('created');
    });
    const g = await startGatehouse(yaml(up.url, '{ mode: fallback, backoff: { base: 20ms, max: 50ms } }'));
    const key = { 'idempotency-key': 'k-1' };
    const ok = await post(g, '/erp/ok', '{}', key);
    expect([ok.status, ok.text]).toEqual([201, 'created']);
    const invalid = await post(g, '/erp/invalid', '{}', { 'idempotency-key': 'k-2' });
    expect([invalid.status, invalid.text]).toEqual([400, '{"error":"bad"}']);
    const down = await post(g, '/erp/down', '{"n":1}', { 'idempotency-key': 'k-3' });
    expect(down.status).toBe(202);
    expect(down.json()).toMatchObject({ status: 'pending', idempotencyKey: 'k-3' });
    const limited = await post(g, '/erp/limited', '{}', { 'idempotency-key': 'k-4' });
    expect(limited.status).toBe(202);
    await eventually(async () => (await message(g, down.json().id)).status === 'delivered');
    // the live try counts: stored after it, delivered on the second
    expect(await message(g, down.json().id)).toMatchObject({ attempts: 2, lastStatus: 201 });
    await eventually(async () => (await message(g, limited.json().id)).status === 'delivered');
    expect(up.received.filter((r) => r.url === '/down').map((r) => [r.headers['idempotency-key'], r.body.toString()])).toEqual([
      ['k-3', '{"n":1}'],
      ['k-3', '{"n":1}'],
    ]);
  });

  it('falls back when there is no answer at all (connect failure), with the route\'s generated key', async () => {
    const port = await closedPort();
    const g = await startGatehouse(yaml(`http://127.0.0.1:${port}`, '{ mode: fallback }').replace('timeout: 2s', 'timeout: 2s\n    idempotencyKey: generate'));
    const res = await post(g, '/erp/orders', '{}');
    expect(res.status).toBe(202);
    const m = await message(g, res.json().id);
    // the live try counts (the background tries may have added more by now)
    expect(m).toMatchObject({ status: 'pending', lastStatus: null, idempotencyKey: res.json().idempotencyKey });
    expect(m.attempts).toBeGreaterThanOrEqual(1);
    expect(m.lastError).toMatch(/connect|ECONNREFUSED/i);
  });

  it('passes a failure through unchanged for a request without an Idempotency-Key: it is not safe to send twice', async () => {
    const up = await startUpstream(reply(503, 'down'));
    const g = await startGatehouse(yaml(up.url, '{ mode: fallback }'));
    const res = await post(g, '/erp/orders', '{}');
    expect([res.status, res.text]).toEqual([503, 'down']);
    expect((await request(g.admin('/admin/outbox'))).json().messages).toEqual([]);
  });

  it('keeps the route\'s retries: a 503 retried into a 200 is a plain 200', async () => {
    const up = await startUpstream([reply(503), reply(200, 'fine')]);
    const g = await startGatehouse(
      yaml(up.url, '{ mode: fallback }').replace('timeout: 2s', 'timeout: 2s\n    retry: { attempts: 2, on: [503], backoff: { base: 5ms, max: 10ms } }'),
    );
    const res = await post(g, '/erp/orders', '{}', { 'idempotency-key': 'k-9' });
    expect([res.status, res.text]).toEqual([200, 'fine']);
    expect(up.received).toHaveLength(2);
  });
});

describe('outbox: callback', () => {
  it('POSTs the outcome to the callback URL, signed the Standard Webhooks way, retried until acknowledged', async () => {
    const callbacks: { headers: Record<string, string>; body: string }[] = [];
    const app = await startUpstream((req, res, body) => {
      callbacks.push({ headers: req.headers as Record<string, string>, body: body.toString() });
      res.writeHead(callbacks.length === 1 ? 500 : 204).end(); // the first callback is not acknowledged
    });
    const up = await startUpstream((req, res) => void res.writeHead(req.url === '/bad' ? 409 : 200, { 'content-type': 'application/json', 'x-erp-id': 'E-7' }).end('{"erp":"E-7"}'));
    const g = await startGatehouse(yaml(up.url, `{ mode: async, backoff: { base: 20ms, max: 50ms }, callback: { url: "${app.url}/gatehouse/outbox", secret: "${SECRET}" } }`));
    const { id, idempotencyKey } = (await post(g, '/erp/orders', '{"order":1}')).json();
    await eventually(() => callbacks.length === 2);
    const wh = new Webhook(SECRET);
    for (const c of callbacks) {
      // an independent implementation of the scheme verifies it (and would throw otherwise)
      expect(wh.verify(c.body, c.headers)).toMatchObject({ id });
      expect(c.headers['webhook-id']).toBe(id);
    }
    expect(JSON.parse(callbacks[1]!.body)).toEqual({
      id,
      route: 'erp-orders',
      status: 'delivered',
      attempts: 1,
      idempotencyKey,
      response: { status: 200, headers: expect.objectContaining({ 'content-type': 'application/json', 'x-erp-id': 'E-7' }), body: '{"erp":"E-7"}' },
      error: null,
    });
    expect(() => wh.verify(callbacks[1]!.body.replace('delivered', 'dead'), callbacks[1]!.headers)).toThrow();
    // a tampered signature is caught by the same check written from the spec text
    const { 'webhook-id': wid, 'webhook-timestamp': ts, 'webhook-signature': sig } = callbacks[1]!.headers;
    const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
    expect(sig).toBe(`v1,${createHmac('sha256', key).update(`${wid}.${ts}.${callbacks[1]!.body}`).digest('base64')}`);

    const bad = (await post(g, '/erp/bad', '{}')).json();
    await eventually(() => callbacks.some((c) => JSON.parse(c.body).id === bad.id));
    expect(JSON.parse(callbacks.find((c) => JSON.parse(c.body).id === bad.id)!.body)).toMatchObject({ status: 'dead', attempts: 1, response: { status: 409 } });
  });
});

describe('outbox: config', () => {
  it('refuses GET in delivery.methods, an unknown store and a secret that is not whsec_', async () => {
    const { loadConfigText } = await import('../../src/config/load.js');
    const bad = yaml('http://127.0.0.1:1', `{ mode: async, methods: [POST, GET], store: nope, callback: { url: "http://127.0.0.1:1/cb", secret: "plain" } }`);
    let message = '';
    try {
      loadConfigText(bad, 'gatehouse.yaml');
    } catch (err) {
      message = String((err as Error & { problems?: unknown[] }).problems?.map((p: any) => `${p.path} ${p.message}`).join('\n') ?? err);
    }
    expect(message).toMatch(/GET is always sent at once/);
    expect(message).toMatch(/unknown store "nope"/);
    expect(message).toMatch(/Standard Webhooks secret/);
  });
});

