import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { SPAN_KIND, startOtlpReceiver } from '../helpers/otlp.js';
import { closedPort, delay, echo, reply, reset, stall, startUpstream, type Reply } from '../helpers/upstream.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A gatehouse with one route `r` on listener `in` to upstream `app`; `route` adds keys to the route. */
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

/** Answers 503 the first time it sees a request (by a header's value), then `then`. */
function failFirstBy(header: string, then: Reply = echo): Reply {
  const seen = new Set<string>();
  return (req, res, body) => {
    const key = String(req.headers[header]);
    if (!seen.has(key)) {
      seen.add(key);
      return reply(503, 'busy')(req, res, body);
    }
    return then(req, res, body);
  };
}

describe('retries', () => {
  it('retries a 503 and answers 200; the upstream counts both tries; metrics, spans and the access log say so', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream([reply(503, 'busy'), reply(200, 'ok')]);
    const g = await startGatehouse(
      config([up.url], `retry: { attempts: 3, on: [503], backoff: { base: 10ms, max: 50ms } }`, `telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`),
    );
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(200);
    expect(res.text).toBe('ok');
    expect(up.received).toHaveLength(2);
    await eventually(() => g.accessLog.json.length === 1);
    expect(g.accessLog.json[0]).toMatchObject({ route: 'r', status: 200, attempts: 2, retrySkipped: null });

    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_retries_total', { route: 'r', reason: '503' })).toBe(1);

    await g.stop(); // flushes the spans
    const server = otlp.spans.find((s) => s.kind === SPAN_KIND.SERVER)!;
    const clients = otlp.spans.filter((s) => s.kind === SPAN_KIND.CLIENT && s.traceId === server.traceId);
    expect(clients).toHaveLength(2);
    const byResend = clients.sort((a, b) => Number(a.attributes['http.request.resend_count'] ?? 0) - Number(b.attributes['http.request.resend_count'] ?? 0));
    expect(byResend[0]!.attributes['http.request.resend_count']).toBeUndefined();
    expect(byResend[0]!.attributes['http.response.status_code']).toBe(503);
    expect(byResend[1]!.attributes['http.request.resend_count']).toBe(1);
    expect(byResend[1]!.attributes['http.response.status_code']).toBe(200);
    const retryEvent = server.events.find((e) => e.name === 'gatehouse.retry');
    expect(retryEvent?.attributes).toMatchObject({ reason: '503', 'gatehouse.attempt': 2 });
    expect(Number(retryEvent?.attributes['gatehouse.retry.delay_ms'])).toBeLessThan(50);
  });

  it('passes the last upstream answer through unchanged when the attempts are used up', async () => {
    const up = await startUpstream(reply(503, 'still busy', { 'x-upstream': 'yes' }));
    const g = await startGatehouse(config([up.url], `retry: { attempts: 3, on: [5xx], backoff: { base: 5ms, max: 10ms } }`));
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(503);
    expect(res.text).toBe('still busy');
    expect(res.headers['x-upstream']).toBe('yes');
    expect(res.headers['gatehouse-error']).toBeUndefined();
    expect(up.received).toHaveLength(3);
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_retries_total', { route: 'r', reason: '503' })).toBe(2);
  });

  it('does not retry a POST without an Idempotency-Key, and retries one that has it', async () => {
    const up = await startUpstream(failFirstBy('x-request-id'));
    const g = await startGatehouse(config([up.url], `retry: { attempts: 3, on: [503], backoff: { base: 5ms, max: 10ms } }`));
    const plain = await g.fetch('in', '/pay', { method: 'POST', body: '{"amount":1}', headers: { 'content-type': 'application/json' } });
    expect(plain.status).toBe(503);
    expect(up.received).toHaveLength(1);

    const keyed = await g.fetch('in', '/pay', { method: 'POST', body: '{"amount":2}', headers: { 'idempotency-key': 'order-42', 'content-type': 'application/json' } });
    expect(keyed.status).toBe(200);
    expect(up.received).toHaveLength(3);
    expect(up.received[1]!.body.toString()).toBe('{"amount":2}');
    expect(up.received[2]!.body.toString()).toBe('{"amount":2}');
    expect(up.received[2]!.headers['idempotency-key']).toBe('order-42');
  });

  it('retries idempotent methods: GET, HEAD, OPTIONS, PUT and DELETE', async () => {
    const up = await startUpstream(failFirstBy('x-request-id', reply(204)));
    const g = await startGatehouse(config([up.url], `retry: { attempts: 2, on: [503], backoff: { base: 5ms, max: 10ms } }`));
    for (const method of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']) {
      const res = await g.fetch('in', '/x', { method, body: method === 'PUT' ? 'v' : undefined });
      expect(res.status, method).toBe(204);
    }
    expect(up.received).toHaveLength(10);
    const patch = await g.fetch('in', '/x', { method: 'PATCH', body: 'p' });
    expect(patch.status).toBe(503);
    expect(up.received).toHaveLength(11);
  });

  it('generates one Idempotency-Key for a POST, the same on every attempt, and never replaces a client key', async () => {
    const up = await startUpstream(failFirstBy('idempotency-key'));
    const g = await startGatehouse(
      config([up.url], `idempotencyKey: generate\nretry: { attempts: 3, on: [503], backoff: { base: 5ms, max: 10ms } }`),
    );
    const res = await g.fetch('in', '/charge', { method: 'POST', body: 'amount=5' });
    expect(res.status).toBe(200);
    expect(up.received).toHaveLength(2);
    const key = up.received[0]!.headers['idempotency-key'];
    expect(key).toMatch(UUID_V4);
    expect(up.received[1]!.headers['idempotency-key']).toBe(key);
    expect(up.received[1]!.body.toString()).toBe('amount=5');

    const own = await g.fetch('in', '/charge', { method: 'PATCH', body: 'x', headers: { 'Idempotency-Key': 'client-key-1' } });
    expect(own.status).toBe(200);
    const sent = up.received.slice(2);
    expect(sent).toHaveLength(2);
    for (const r of sent) {
      expect(r.headers['idempotency-key']).toBe('client-key-1');
      expect(r.rawHeaders.filter((h) => h.toLowerCase() === 'idempotency-key')).toHaveLength(1);
    }

    const another = await g.fetch('in', '/charge', { method: 'POST', body: 'amount=6' });
    expect(another.status).toBe(200);
    expect(up.received.at(-1)!.headers['idempotency-key']).not.toBe(key); // fresh per request

    await g.fetch('in', '/read');
    expect(up.received.at(-1)!.headers['idempotency-key']).toBeUndefined(); // GET needs none
  });

  it('honours Retry-After in seconds', async () => {
    const up = await startUpstream([reply(503, 'busy', { 'retry-after': '1' }), reply(200, 'ok')]);
    const g = await startGatehouse(config([up.url], `timeout: 5s\nretry: { attempts: 2, on: [503], backoff: { base: 1ms, max: 1ms } }`));
    const started = performance.now();
    const res = await g.fetch('in', '/x');
    const took = performance.now() - started;
    expect(res.status).toBe(200);
    expect(up.received).toHaveLength(2);
    expect(took).toBeGreaterThanOrEqual(950);
  });

  it('honours Retry-After as an HTTP-date', async () => {
    const at = () => new Date(Date.now() + 2_000).toUTCString(); // whole seconds: waits 1-2 s
    const up = await startUpstream([(req, res) => void res.writeHead(429, { 'retry-after': at() }).end(), reply(200, 'ok')]);
    const g = await startGatehouse(config([up.url], `timeout: 5s\nretry: { attempts: 2, on: [429], backoff: { base: 1ms, max: 1ms } }`));
    const started = performance.now();
    const res = await g.fetch('in', '/x');
    const took = performance.now() - started;
    expect(res.status).toBe(200);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(4_000);
  });

  it('waits for the reset the IETF RateLimit field announces', async () => {
    const up = await startUpstream([reply(429, 'slow down', { ratelimit: '"api";r=0;t=1' }), reply(200, 'ok')]);
    const g = await startGatehouse(config([up.url], `timeout: 5s\nretry: { attempts: 2, on: [429], backoff: { base: 1ms, max: 1ms } }`));
    const started = performance.now();
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('returns the upstream answer at once when its Retry-After does not fit in the route timeout, and says why in metrics and the access log', async () => {
    const up = await startUpstream([reply(503, 'come back later', { 'retry-after': '5' }), reply(200, 'ok')]);
    const g = await startGatehouse(config([up.url], `timeout: 2s\nretry: { attempts: 3, on: [503] }`));
    const started = performance.now();
    const res = await g.fetch('in', '/x');
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(res.status).toBe(503);
    expect(res.text).toBe('come back later');
    expect(res.headers['retry-after']).toBe('5');
    expect(up.received).toHaveLength(1);
    await eventually(() => g.accessLog.json.length === 1);
    expect(g.accessLog.json[0]).toMatchObject({ status: 503, attempts: 1, retrySkipped: 'deadline' });
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_retries_skipped_total', { route: 'r', reason: 'deadline' })).toBe(1);
    expect(sample(metrics, 'gatehouse_retries_total', { route: 'r' })).toBeUndefined();
  });

  it('uses back-off instead of Retry-After when respectRetryAfter is false', async () => {
    const up = await startUpstream([reply(503, 'busy', { 'retry-after': '30' }), reply(200, 'ok')]);
    const g = await startGatehouse(config([up.url], `timeout: 2s\nretry: { attempts: 2, on: [503], respectRetryAfter: false, backoff: { base: 10ms, max: 10ms } }`));
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(200);
    expect(up.received).toHaveLength(2);
  });

  it('a fully failing upstream under load sees at most (1 + budget) times the client requests', async () => {
    // Every answer takes the same time, as from an upstream that is down for everyone; long enough
    // that the 200 requests are in flight together even on a busy machine. The budget grants about
    // N/6 retries in the first wave (20% of the first tries still in flight as they drain) and the
    // minimum concurrency of 3 a couple more at the tail: about 236 of the 240 allowed.
    const up = await startUpstream(delay(800, reply(503, 'down')));
    const g = await startGatehouse(
      config([up.url], `timeout: 20s\nretry: { attempts: 3, on: [503], budget: 0.2, backoff: { base: 400ms, max: 800ms } }`),
    );
    const clients = 200;
    const answers = await Promise.all(Array.from({ length: clients }, () => g.fetch('in', '/x', { timeoutMs: 30_000 })));
    expect(answers.every((a) => a.status === 503 && a.text === 'down')).toBe(true);
    expect(up.received.length).toBeGreaterThan(clients); // the budget let some retries through...
    expect(up.received.length).toBeLessThanOrEqual(clients * 1.2); // ...but no storm: without it, 300
    const metrics = await scrape(g.admin('/metrics'));
    expect(sample(metrics, 'gatehouse_retries_total', { route: 'r', reason: '503' })).toBe(up.received.length - clients);
    // every retry the budget refused is counted and named on its request's access-log line
    const refused = sample(metrics, 'gatehouse_retries_skipped_total', { route: 'r', reason: 'budget' }) ?? 0;
    expect(refused).toBeGreaterThan(0);
    await eventually(() => g.accessLog.json.length === clients);
    expect(g.accessLog.json.filter((l) => l.retrySkipped === 'budget')).toHaveLength(refused);
  });

  it('cuts a stalled try at perTryTimeout and retries it within the route timeout', async () => {
    const otlp = await startOtlpReceiver();
    const up = await startUpstream([stall, reply(200, 'second try')]);
    const g = await startGatehouse(
      config([up.url], `timeout: 5s\nretry: { attempts: 3, on: [timeout], perTryTimeout: 300ms, backoff: { base: 1ms, max: 1ms } }`, `telemetry: { traces: { endpoint: ${otlp.tracesUrl} } }`),
    );
    const started = performance.now();
    const res = await g.fetch('in', '/x');
    const took = performance.now() - started;
    expect(res.status).toBe(200);
    expect(res.text).toBe('second try');
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(3_000);
    expect(up.received).toHaveLength(2);
    await g.stop();
    const clients = otlp.spans.filter((s) => s.kind === SPAN_KIND.CLIENT);
    expect(clients.map((s) => s.attributes['error.type']).sort()).toEqual(['timeout', undefined]);
  });

  it('answers 504 upstream_timeout when the last perTryTimeout passes', async () => {
    const up = await startUpstream(stall);
    const g = await startGatehouse(config([up.url], `timeout: 10s\nretry: { attempts: 2, on: [timeout], perTryTimeout: 250ms, backoff: { base: 1ms, max: 1ms } }`));
    const started = performance.now();
    const res = await g.fetch('in', '/x');
    const took = performance.now() - started;
    expect(res.status).toBe(504);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('upstream_timeout');
    expect(res.json()).toMatchObject({ code: 'upstream_timeout', status: 504, route: 'r' });
    expect(took).toBeGreaterThanOrEqual(490);
    expect(took).toBeLessThan(5_000);
    expect(up.received).toHaveLength(2);
    await eventually(() => g.accessLog.json.length === 1);
    expect(g.accessLog.json[0]).toMatchObject({ status: 504, attempts: 2, error: 'upstream_timeout' });
  });

  it('the route timeout bounds all tries: it passes before the per-try timeouts add up', async () => {
    const up = await startUpstream(stall);
    const g = await startGatehouse(config([up.url], `timeout: 600ms\nretry: { attempts: 3, on: [timeout], perTryTimeout: 2s }`));
    const started = performance.now();
    const res = await g.fetch('in', '/x');
    const took = performance.now() - started;
    expect(res.status).toBe(504);
    expect(res.headers['gatehouse-error']).toBe('upstream_timeout');
    expect(took).toBeGreaterThanOrEqual(590);
    expect(took).toBeLessThan(2_000);
    expect(up.received).toHaveLength(1);
  });

  it('retries a reset before any response byte, but never one after the response started', async () => {
    const up = await startUpstream([reset, reply(200, 'fine')]);
    const g = await startGatehouse(config([up.url], `retry: { attempts: 3, on: [reset], backoff: { base: 1ms, max: 1ms } }`));
    expect((await g.fetch('in', '/a')).status).toBe(200);
    expect(up.received).toHaveLength(2);

    const midway: Reply = (_req, res) => {
      res.writeHead(200, { 'content-length': '1000', 'content-type': 'text/plain' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 50);
    };
    const up2 = await startUpstream([midway, reply(200, 'would be a duplicate')]);
    const g2 = await startGatehouse(config([up2.url], `retry: { attempts: 3, on: [reset, 5xx], backoff: { base: 1ms, max: 1ms } }`));
    await expect(g2.fetch('in', '/b')).rejects.toThrow(); // truncated: the client sees a cut connection, never a fake whole body
    await eventually(() => g2.accessLog.json.length === 1);
    await new Promise((r) => setTimeout(r, 200)); // give a (wrong) retry the time it would need
    expect(up2.received).toHaveLength(1);
    expect(g2.accessLog.json[0]).toMatchObject({ status: 200, attempts: 1 });
  });

  it('retries a connect failure on the next endpoint', async () => {
    const dead = await closedPort();
    const up = await startUpstream(reply(200, 'alive'));
    const g = await startGatehouse(config([`http://127.0.0.1:${dead}`, up.url], `retry: { attempts: 2, on: [connect-failure], backoff: { base: 1ms, max: 1ms } }`));
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(200);
    expect(res.text).toBe('alive');
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_retries_total', { route: 'r', reason: 'connect-failure' })).toBe(1);
  });

  it('stops waiting and never retries once the client went away', async () => {
    const up = await startUpstream([reply(503, 'busy', { 'retry-after': '3' }), reply(200, 'too late')]);
    const g = await startGatehouse(config([up.url], `timeout: 10s\nretry: { attempts: 2, on: [503] }`));
    const started = performance.now();
    await expect(g.fetch('in', '/x', { timeoutMs: 300 })).rejects.toThrow(); // the client gives up during the 3 s wait
    // the log line follows once the policies settled: at once if the wait was cancelled, after the retry if not
    await eventually(() => g.accessLog.json.length === 1, 5_000);
    expect(performance.now() - started).toBeLessThan(2_500);
    expect(g.accessLog.json[0]).toMatchObject({ status: 499, attempts: 1 });
    expect(up.received).toHaveLength(1);
  });

  it('answers 502 bad_gateway itself only when no try got an answer', async () => {
    const dead = await closedPort();
    const g = await startGatehouse(config([`http://127.0.0.1:${dead}`], `retry: { attempts: 3, on: [connect-failure], backoff: { base: 1ms, max: 5ms } }`));
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['gatehouse-error']).toBe('bad_gateway');
    expect(res.json()).toMatchObject({ type: 'urn:gatehouse:error:bad_gateway', code: 'bad_gateway', status: 502, route: 'r' });
    await eventually(() => g.accessLog.json.length === 1);
    expect(g.accessLog.json[0]).toMatchObject({ status: 502, attempts: 3, error: 'bad_gateway' });
    expect(sample(await scrape(g.admin('/metrics')), 'gatehouse_retries_total', { route: 'r', reason: 'connect-failure' })).toBe(2);
  });

  it('replays a body up to retry.maxBodySize, chunked or not, and sends a larger one once', async () => {
    const up = await startUpstream(failFirstBy('x-request-id'));
    const g = await startGatehouse(config([up.url], `retry: { attempts: 2, on: [503], maxBodySize: 1kb, backoff: { base: 1ms, max: 1ms } }`));
    const small = 'a'.repeat(1000);
    const res = await g.fetch('in', '/put', { method: 'PUT', body: small });
    expect(res.status).toBe(200);
    expect(up.received.map((r) => r.body.toString())).toEqual([small, small]);

    const chunked = await g.fetch('in', '/put', { method: 'PUT', body: small, headers: { 'transfer-encoding': 'chunked' } });
    expect(chunked.status).toBe(200);
    expect(up.received.slice(2).map((r) => r.body.toString())).toEqual([small, small]);

    const large = 'b'.repeat(5000);
    const big = await g.fetch('in', '/put', { method: 'PUT', body: large });
    expect(big.status).toBe(503); // sent once, so its 503 is the answer
    expect(up.received.slice(4).map((r) => r.body.toString())).toEqual([large]);

    const bigChunked = await g.fetch('in', '/put', { method: 'PUT', body: large, headers: { 'transfer-encoding': 'chunked' } });
    expect(bigChunked.status).toBe(503);
    expect(up.received.slice(5).map((r) => r.body.toString())).toEqual([large]);
  });

  it('does not retry a status that `on` does not list, nor a 4xx by default', async () => {
    const up = await startUpstream(reply(500, 'oops'));
    const g = await startGatehouse(config([up.url], `retry: {}`));
    expect((await g.fetch('in', '/x')).status).toBe(500);
    expect(up.received).toHaveLength(1);
  });

  it('rejects retry settings that make no sense, with their position', async () => {
    const { loadConfigText } = await import('../../src/config/load.js');
    const yaml = config(['http://127.0.0.1:1'], `retry: { attempts: three, on: [503, sometimes], backoff: { base: 2s, max: 1s }, budget: 2 }`);
    let message = '';
    try {
      loadConfigText(yaml, 'g.yaml');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/g\.yaml:\d+:\d+ routes\[0\]\(r\)\.retry\.attempts: must be an integer >= 1/);
    expect(message).toMatch(/routes\[0\]\(r\)\.retry\.on\[1\]: must be connect-failure, reset, timeout, invalid-response, a status code such as 503 or a class such as 5xx \(got "sometimes"\)/);
    expect(message).toMatch(/routes\[0\]\(r\)\.retry\.backoff\.max: must not be shorter than backoff\.base/);
    expect(message).toMatch(/routes\[0\]\(r\)\.retry\.budget: must be between 0 and 1/);
  });
});
