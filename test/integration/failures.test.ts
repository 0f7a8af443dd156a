import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, type Response } from '../helpers/http.js';
import { startRawUpstream } from '../helpers/raw.js';
import { closedPort, echo, reply, reset, stall, startUpstream, type Reply } from '../helpers/upstream.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

const config = (endpoints: string, route = '', upstream = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${endpoints}]${upstream} } }
routes:
  - name: api
    listener: in
    match: { pathPrefix: / }
    upstream: app
${route}`;

/** Every SPEC §4 field, the content type and the gatehouse-error header of a gatehouse answer. */
function expectProblem(res: Response, status: number, code: string, detail: RegExp | string) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['gatehouse-error']).toBe(code);
  const body = res.json();
  expect(body).toMatchObject({ type: `urn:gatehouse:error:${code}`, status, code, route: 'api', traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
  expect(typeof body.title).toBe('string');
  expect(body.detail).toMatch(detail);
}

/** A request whose response is observed as it streams (status, then body or error). */
function openRequest(url: string, options: { method?: string; headers?: Record<string, string> } = {}) {
  const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
  });
  return { req, response };
}

describe('upstream failures', () => {
  it('answers 502 bad_gateway with every problem field when the upstream refuses connections', async () => {
    const port = await closedPort();
    const g = await startGatehouse(config(`http://127.0.0.1:${port}`));
    const res = await g.fetch('in', '/x', { headers: { traceparent: TRACEPARENT } });
    expectProblem(res, 502, 'bad_gateway', "could not connect to upstream 'app'");
    expect(res.json().title).toBe('Bad gateway');
    expect(g.accessLog.json.at(-1)).toMatchObject({ status: 502, error: 'bad_gateway', attempts: 1 });
  });

  it('answers 502 bad_gateway when the upstream resets the connection before answering', async () => {
    const up = await startUpstream(reset);
    const g = await startGatehouse(config(up.url));
    expectProblem(await g.fetch('in', '/x', { headers: { traceparent: TRACEPARENT } }), 502, 'bad_gateway', /closed the connection/);
  });

  it('answers 502 bad_gateway when the upstream sends something that is not HTTP', async () => {
    const up = await startRawUpstream((socket, request) => void request.then(() => socket.end('SSH-2.0-OpenSSH_9.6\r\n\r\n')));
    const g = await startGatehouse(config(up.url));
    expectProblem(await g.fetch('in', '/x', { headers: { traceparent: TRACEPARENT } }), 502, 'bad_gateway', /invalid HTTP response/);
  });

  it('answers 504 upstream_timeout when the upstream stalls past the route timeout, and closes the upstream request', async () => {
    const up = await startUpstream(stall);
    const g = await startGatehouse(config(up.url, '    timeout: 300ms\n'));
    const started = performance.now();
    const res = await g.fetch('in', '/x', { headers: { traceparent: TRACEPARENT } });
    const tookMs = performance.now() - started;
    expectProblem(res, 504, 'upstream_timeout', /route timeout of 300ms/);
    expect(res.json().title).toBe('Upstream timeout');
    expect(tookMs).toBeGreaterThanOrEqual(290);
    expect(tookMs).toBeLessThan(3_000);
    await eventually(() => up.closedEarly.length === 1); // the stalled upstream request was cancelled
    expect(g.accessLog.json.at(-1)).toMatchObject({ status: 504, error: 'upstream_timeout' });
  });

  it('times out a request still waiting for a pooled connection at the route timeout', async () => {
    const up = await startUpstream(stall);
    const g = await startGatehouse(
      config(up.url, '    timeout: 400ms\n', ', maxConnections: 1').replace(
        'routes:\n',
        'routes:\n  - { name: slow, listener: in, match: { path: /first }, upstream: app, timeout: 10s }\n',
      ),
    );
    const first = g.fetch('in', '/first');
    await eventually(() => up.received.length === 1);
    const started = performance.now();
    const second = await g.fetch('in', '/second', { headers: { traceparent: TRACEPARENT } });
    expectProblem(second, 504, 'upstream_timeout', /route timeout/);
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(g.gh.currentPlan().upstreams.get('app')!.inFlight).toBe(1);
    expect(up.received.map((r) => r.url)).toEqual(['/first']);
    void first.catch(() => {});
  });

  it('uses several endpoints round-robin', async () => {
    const a = await startUpstream(reply(200, 'a'));
    const b = await startUpstream(reply(200, 'b'));
    const c = await startUpstream(reply(200, 'c'));
    const g = await startGatehouse(config(`${a.url}, ${b.url}, ${c.url}`));
    const bodies: string[] = [];
    for (let i = 0; i < 6; i++) bodies.push((await g.fetch('in', '/x')).text);
    expect(bodies).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('passes an upstream error answer through unchanged, without a gatehouse-error header', async () => {
    const up = await startUpstream(reply(500, 'boom', { 'content-type': 'text/plain' }));
    const g = await startGatehouse(config(up.url));
    const res = await g.fetch('in', '/x');
    expect(res.status).toBe(500);
    expect(res.text).toBe('boom');
    expect(res.headers['gatehouse-error']).toBeUndefined();
    expect(g.accessLog.json.at(-1)).toMatchObject({ status: 500, error: null });
  });
});

describe('early answers', () => {
  // An upstream that also closes the connection at once (`Connection: close`) still ends in 502:
  // undici's write of the rest of the body fails with EPIPE before it parses the answer that is
  // already in the socket (nodejs/node#12339, #54366). Node's own server, as here, keeps reading.
  it('passes an upstream answer sent before the request body was read (401 to a large upload) to the client', async () => {
    const up = await startUpstream(
      (_req, res) => {
        res.writeHead(401, { 'content-type': 'text/plain' }).end('no');
      },
      { streaming: true },
    );
    const g = await startGatehouse(config(up.url));
    const { req, response } = openRequest(g.url('in') + '/upload', { method: 'POST', headers: { 'content-length': String(20 * 1024 * 1024) } });
    req.on('error', () => {}); // the upload may be cut once the answer is in
    const chunk = Buffer.alloc(64 * 1024, 1);
    let sent = 0;
    const pump = () => {
      while (sent < 20 * 1024 * 1024) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
    const res = await response;
    let text = '';
    for await (const c of res) text += (c as Buffer).toString();
    expect(res.statusCode).toBe(401);
    expect(text).toBe('no');
  });
});

describe('aborts', () => {
  it('cancels the upstream request when the client goes away', async () => {
    let upstreamClosed: Promise<unknown> | undefined;
    const handler: Reply = (req, res) => {
      upstreamClosed = once(res, 'close');
      return new Promise<void>(() => {});
    };
    const up = await startUpstream(handler);
    const g = await startGatehouse(config(up.url));
    const { req, response } = openRequest(g.url('in') + '/slow');
    response.catch(() => {});
    req.end();
    await eventually(() => up.received.length === 1 && upstreamClosed !== undefined);
    req.destroy();
    await upstreamClosed; // the upstream saw its request closed
    const line = await eventually(() => g.accessLog.json.at(-1));
    expect(line).toMatchObject({ status: 499, path: '/slow' });
    await eventually(() => g.gh.currentPlan().upstreams.get('app')!.inFlight === 0);
  });

  it('never sends a request whose client left while it waited for a pooled connection', async () => {
    const up = await startUpstream(stall);
    const g = await startGatehouse(config(up.url, '', ', maxConnections: 1'));
    const first = openRequest(g.url('in') + '/first');
    first.response.catch(() => {});
    first.req.end();
    await eventually(() => up.received.length === 1);
    const second = openRequest(g.url('in') + '/second');
    second.response.catch(() => {});
    second.req.end();
    await eventually(() => g.gh.currentPlan().upstreams.get('app')!.inFlight === 2);
    second.req.destroy();
    await eventually(() => g.gh.currentPlan().upstreams.get('app')!.inFlight === 1);
    first.req.destroy();
    await eventually(() => g.gh.currentPlan().upstreams.get('app')!.inFlight === 0);
    await new Promise((r) => setTimeout(r, 200));
    expect(up.received.map((r) => r.url)).toEqual(['/first']);
  });

  it('cuts the client connection when the upstream dies mid-body, never ending it cleanly', async () => {
    const up = await startRawUpstream((socket, request) => {
      void request.then(() => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n');
        socket.write('x'.repeat(1000), () => setTimeout(() => socket.destroy(), 50));
      });
    });
    const g = await startGatehouse(config(up.url));
    const { req, response } = openRequest(g.url('in') + '/download');
    req.end();
    const res = await response;
    expect(res.statusCode).toBe(200);
    let received = 0;
    res.on('data', (c: Buffer) => (received += c.length));
    const outcome = await new Promise<string>((resolve) => {
      res.on('end', () => resolve('end'));
      res.on('error', (err) => resolve(`error: ${err.message}`));
      res.on('close', () => resolve(res.complete ? 'end' : 'incomplete'));
    });
    expect(outcome).not.toBe('end');
    expect(received).toBeLessThan(100_000);
    const line = await eventually(() => g.accessLog.json.at(-1));
    expect(line).toMatchObject({ status: 200, error: 'bad_gateway' });
  });

  it('cuts a chunked response when the upstream dies before the last chunk', async () => {
    const up = await startRawUpstream((socket, request) => {
      void request.then(() => {
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n', () => setTimeout(() => socket.destroy(), 50));
      });
    });
    const g = await startGatehouse(config(up.url));
    const { req, response } = openRequest(g.url('in') + '/stream');
    req.end();
    const res = await response;
    const outcome = await new Promise<string>((resolve) => {
      res.resume();
      res.on('end', () => resolve('end'));
      res.on('error', () => resolve('error'));
      res.on('close', () => resolve(res.complete ? 'end' : 'incomplete'));
    });
    expect(outcome).not.toBe('end');
  });
});

describe('maxBodySize', () => {
  const limited = (url: string) => config(url, '    maxBodySize: 1kb\n');

  it('answers 413 payload_too_large from Content-Length, before the upstream sees anything', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(limited(up.url));
    const res = await g.fetch('in', '/x', { method: 'POST', body: Buffer.alloc(2048, 1), headers: { traceparent: TRACEPARENT } });
    expectProblem(res, 413, 'payload_too_large', /maxBodySize of 1024 bytes/);
    expect(res.headers.connection).toBe('close');
    expect(up.received).toHaveLength(0);
    expect((await g.fetch('in', '/x', { method: 'POST', body: Buffer.alloc(1024, 1) })).status).toBe(200);
  });

  it('answers 413 for a chunked body once it passes the limit', async () => {
    const up = await startUpstream(echo, { streaming: true });
    const g = await startGatehouse(limited(up.url));
    const { req, response } = openRequest(g.url('in') + '/x', { method: 'POST', headers: { 'transfer-encoding': 'chunked', traceparent: TRACEPARENT } });
    req.write(Buffer.alloc(600, 1));
    req.write(Buffer.alloc(600, 1));
    const res = await response;
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    expect(res.statusCode).toBe(413);
    expect(res.headers['gatehouse-error']).toBe('payload_too_large');
    expect(res.headers.connection).toBe('close');
    expect(JSON.parse(Buffer.concat(chunks).toString())).toMatchObject({ code: 'payload_too_large', route: 'api' });
    req.destroy();
    const ok = await g.fetch('in', '/x', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: Buffer.alloc(1000, 1) });
    expect(ok.status).toBe(200);
  });
});
