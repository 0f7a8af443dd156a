import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { eventually, request, type Response } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * `npm run demo` as a newcomer uses it: the demo runs as its own process (from source through
 * tsx, so no stale build is tested), on free ports given by its DEMO_*_PORT variables. The test
 * runs every curl command the demo printed, in the printed order, and checks each answers what
 * the text next to it promises; then it stops the demo with SIGINT as Ctrl-C would.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PORT_VARS = [
  'DEMO_INBOUND_PORT',
  'DEMO_OUTBOUND_PORT',
  'DEMO_ADMIN_PORT',
  'DEMO_STORE_PORT',
  'DEMO_PROVIDER_PORT',
  'DEMO_AUTH_PORT',
  'DEMO_SHOPIFY_PORT',
  'DEMO_OTLP_PORT',
];

interface Demo {
  readonly child: ChildProcess;
  readonly ports: Record<string, number>;
  stdout(): string;
  stderr(): string;
  exit: Promise<number | null>;
}

/** Distinct free ports: all held open at once, so the OS cannot hand out one twice. */
async function freePorts(): Promise<Record<string, number>> {
  const servers = await Promise.all(PORT_VARS.map(() => startUpstream()));
  const ports = Object.fromEntries(PORT_VARS.map((name, i) => [name, servers[i]!.port]));
  await Promise.all(servers.map((s) => s.close()));
  return ports;
}

function startDemo(ports: Record<string, number>): Demo {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('OTEL_')) env[k] = v;
  for (const [k, v] of Object.entries(ports)) env[k] = String(v);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo/main.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, ports, stdout: () => out, stderr: () => err, exit };
}

interface Curl {
  readonly line: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

/**
 * The printed guide's curl commands. `take(marker)` hands out the one line that contains the
 * marker (its command parsed as curl would read it) and ticks it off; lines must be taken in
 * the printed order, so the test runs them as a newcomer pastes them. `unchecked()` lists the
 * lines no check took, so a command added to the guide without a check fails the test.
 */
function guideOf(output: string) {
  const guide = output.slice(0, output.indexOf('\nBelow:'));
  const lines = guide.split('\n').filter((l) => l.includes('curl '));
  const taken = new Set<string>();
  let previous = -1;
  return {
    lines,
    take(marker: string): Curl {
      const found = lines.filter((l) => l.includes(marker) && !taken.has(l));
      if (found.length !== 1) throw new Error(`expected one printed curl line with ${JSON.stringify(marker)}, found ${found.length}`);
      const line = found[0]!;
      taken.add(line);
      if (lines.indexOf(line) < previous) throw new Error(`the guide prints ${JSON.stringify(marker)} before the command checked just before it`);
      previous = lines.indexOf(line);
      const command = line.slice(0, line.indexOf(' # ') < 0 ? undefined : line.indexOf(' # '));
      const url = /(http:\/\/127\.0\.0\.1:\d+[^\s']*)/.exec(command)![1]!;
      const method = /-X (\w+)/.exec(command)?.[1] ?? (/ (-d|--data-binary) /.test(command) ? 'POST' : 'GET'); // curl posts data
      const headers: Record<string, string> = {};
      for (const m of command.matchAll(/-H '([^:]+): ([^']*)'/g)) headers[m[1]!] = m[2]!;
      const body = /-d '([^']*)'/.exec(command)?.[1];
      return { line, method, url, headers, body };
    },
    unchecked: () => lines.filter((l) => !taken.has(l)),
  };
}

const send = (c: Curl, body = c.body): Promise<Response> => request(c.url, { method: c.method, headers: c.headers, body });

function expectProblem(res: Response, status: number, code: string): void {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['gatehouse-error']).toBe(code);
  expect(res.json()).toMatchObject({ type: `urn:gatehouse:error:${code}`, status, code });
}

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });

describe('npm run demo', () => {
  it('starts everything, and every curl it prints answers what the text next to it says; stops cleanly on SIGINT', async () => {
    const demo = startDemo(await freePorts());
    await eventually(() => {
      if (demo.child.exitCode !== null) throw new Error(`the demo exited with ${demo.child.exitCode}`);
      return demo.stdout().includes('Ctrl-C stops everything') && demo.stdout().includes('\nBelow:');
    }, 45_000, 100).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout:\n${demo.stdout()}\nstderr:\n${demo.stderr()}`);
    });
    const out = demo.stdout();
    expect(out).toContain(`http://127.0.0.1:${demo.ports.DEMO_INBOUND_PORT}`);
    const guide = guideOf(out);
    expect(guide.lines.length).toBeGreaterThanOrEqual(20);

    // 1. routing: inbound /api/* reaches the store with /api stripped
    const listed = await send(guide.take('# 200: the products'));
    expect(listed.status).toBe(200);
    expect(listed.json().products.map((p: { id: string }) => p.id)).toContain('mug');
    expect(listed.headers['x-request-id']).toBeTruthy();
    const cart = await send(guide.take('/api/cart -H'));
    expect(cart.status).toBe(200);
    expect(cart.json().items).toEqual([expect.objectContaining({ productId: 'tee', quantity: 2 })]);

    // 2. the per-address quota: six in a row end in 429, every answer with the RateLimit headers
    const loop = guide.take('ratelimit|retry-after');
    const rounds = /for i in ([\d ]+);/.exec(loop.line)![1]!.trim().split(/\s+/).length;
    expect(loop.line).toContain("grep -iE '^(HTTP/|ratelimit|retry-after)'");
    const answers: Response[] = [];
    for (let i = 0; i < rounds; i++) answers.push(await send(loop));
    for (const a of answers) {
      expect(a.headers['ratelimit-policy']).toBe('"catalogue-0";q=5;w=10');
      expect(a.headers.ratelimit).toMatch(/^"catalogue-0";r=\d+;t=\d+$/);
    }
    const last = answers.at(-1)!;
    expectProblem(last, 429, 'rate_limited');
    expect(last.headers.ratelimit).toMatch(/;r=0;/);
    expect(Number(last.headers['retry-after'])).toBeGreaterThanOrEqual(1);

    // 3. JWT: the minted token passes and its sub reaches the store; no token is a 401
    const withToken = guide.take('authorization: Bearer');
    expect(withToken.line).toContain('"user":"shopper-42"');
    const account = await send(withToken);
    expect(account.status, account.text).toBe(200);
    expect(account.json().user).toBe('shopper-42');
    const anonymous = await send(guide.take('401 unauthorized'));
    expectProblem(anonymous, 401, 'unauthorized');
    expect(anonymous.headers['www-authenticate']).toBe('Bearer');

    // 4. checkout: every one succeeds, retried or not
    const order = await send(guide.take('/api/checkout'));
    expect(order.status, order.text).toBe(201);
    expect(order.json().charge).toMatchObject({ object: 'charge', status: 'succeeded' });

    // 5. gatehouse's own errors, in the printed order: slow before the breaker opens
    expectProblem(await send(guide.take('404 no_route')), 404, 'no_route');
    const slow = guide.take('504 upstream_timeout');
    expect(slow.headers['x-demo-fault']).toBe('slow');
    expectProblem(await send(slow), 504, 'upstream_timeout');
    const down = guide.take('502 bad_gateway');
    expect(down.headers['x-demo-fault']).toBe('down');
    const hungUp = await send(down);
    expectProblem(hungUp, 502, 'bad_gateway');
    expect(hungUp.json().route).toBe('payments');
    const again = guide.take('503 circuit_open');
    expect(again.headers['x-demo-fault']).toBe('down');
    const open = await send(again);
    expectProblem(open, 503, 'circuit_open');
    expect(Number(open.headers['retry-after'])).toBeGreaterThan(0);
    const big = guide.take('413 payload_too_large');
    const bytes = Number(/head -c (\d+) \/dev\/zero/.exec(big.line)![1]);
    expectProblem(await send(big, Buffer.alloc(bytes).toString()), 413, 'payload_too_large');

    // 6. the paced queue: syncs at once, then an order; none refused, the order overtakes
    const paced = guide.take('/shopify/inventory');
    const syncs = /for i in ([\d ]+);/.exec(paced.line)![1]!.trim().split(/\s+/).length;
    const pauseS = Number(/sleep ([\d.]+);/.exec(paced.line)![1]);
    const syncUrl = /(http:\/\/127\.0\.0\.1:\d+\/shopify\/inventory)/.exec(paced.line)![1]!;
    const orderUrl = /-X POST (http:\/\/127\.0\.0\.1:\d+\/shopify\/orders)/.exec(paced.line)![1]!;
    const t0 = performance.now();
    const finished: { what: string; status: number; atMs: number; tookMs: number }[] = [];
    const timed = (what: string, url: string, method: string) => {
      const start = performance.now();
      return request(url, { method }).then((r) => finished.push({ what, status: r.status, atMs: performance.now() - t0, tookMs: performance.now() - start }));
    };
    const syncRuns = Array.from({ length: syncs }, () => timed('sync', syncUrl, 'GET'));
    await new Promise((r) => setTimeout(r, pauseS * 1000));
    await Promise.all([...syncRuns, timed('order', orderUrl, 'POST')]);
    expect(finished.filter((f) => f.what === 'sync').map((f) => f.status)).toEqual(Array(syncs).fill(200));
    const placed = finished.find((f) => f.what === 'order')!;
    expect(placed.status).toBe(201);
    expect(finished.indexOf(placed), `finish order: ${JSON.stringify(finished)}`).toBe(2); // "the order's third"
    expect(placed.tookMs).toBeLessThan(1000); // "within ~0.5 s"
    expect(Math.max(...finished.map((f) => f.atMs))).toBeGreaterThan(((syncs - 1) / 2) * 1000 * 0.8); // two per second

    // 7. webhooks: signed by the stripe SDK, accepted, a duplicate, a forgery, then delivered
    const sent = await send(guide.take('gatehouse-webhook: accepted'));
    expect(sent.status).toBe(200);
    expect(sent.json().gatehouse).toMatchObject({ status: 200, webhook: 'accepted', body: { status: 'accepted' } });
    const eventId: string = sent.json().sent.id;
    const resent = await send(guide.take('gatehouse-webhook: duplicate'));
    expect(resent.json()).toMatchObject({ sent: { id: eventId }, gatehouse: { status: 200, webhook: 'duplicate' } });
    expectProblem(await send(guide.take('401 invalid_signature')), 401, 'invalid_signature');
    const recent = guide.take('/admin/webhooks/recent');
    const delivered = await eventually(async () => {
      const events = (await send(recent)).json().events as { eventId: string; state: string; headers: string[]; body: string }[];
      return events.find((e) => e.eventId === eventId && e.state === 'delivered');
    }, 10_000, 100);
    expect(delivered.headers).toContain('stripe-signature');
    expect(delivered.body).toContain(eventId);
    const store = await request(`http://127.0.0.1:${demo.ports.DEMO_STORE_PORT}/webhooks`);
    expect(store.json().events.filter((e: { id: string }) => e.id === eventId)).toHaveLength(1); // the duplicate never reached it

    // 8. the admin API: a readable subset of the metrics, the breaker, the quotas, config, reload
    const metrics = guide.take('/metrics | grep');
    const pattern = new RegExp(/grep -E '([^']+)'/.exec(metrics.line)![1]!);
    const series = (await send(metrics)).text.split('\n').filter((l) => pattern.test(l));
    expect(series.length).toBeGreaterThan(5);
    expect(series.length).toBeLessThan(60);
    for (const family of ['gatehouse_retries_total', 'gatehouse_circuit_state', 'gatehouse_ratelimit_decisions_total', 'gatehouse_webhook_events_total', 'http_server_request_duration_seconds_count']) {
      expect(series.some((l) => l.startsWith(family)), family).toBe(true);
    }
    const upstreams = (await send(guide.take('/admin/upstreams'))).json().upstreams;
    expect(['open', 'half-open']).toContain(upstreams.payments.breaker.state);
    const quotas = (await send(guide.take('/admin/quotas'))).json().quotas;
    expect(quotas['catalogue-0']).toMatchObject({ key: 'ip', limit: 5 });
    expect(quotas['shopify-api']).toMatchObject({ onExceed: 'queue', routes: ['shopify-orders', 'shopify-sync'] });
    const config = await send(guide.take('/admin/config'));
    expect(config.status).toBe(200);
    expect(config.text).toContain('"secret": "***"');
    expect(config.text).not.toContain('whsec_gatehouse_demo_secret');
    const reload = await send(guide.take('/admin/reload'));
    expect(reload.status).toBe(200);
    expect(reload.json()).toMatchObject({ version: 1, changed: false });

    expect(guide.unchecked(), 'every printed curl is checked').toEqual([]);

    // the access log line and the spans reach stdout (spans through the built-in OTLP receiver)
    await eventually(() => /"route":"catalogue".*"status":200/.test(demo.stdout()), 15_000, 100);
    await eventually(() => /\[trace [0-9a-f]{8}\] SERVER GET \/api\/products\/\*\s+200/.test(demo.stdout()), 15_000, 100);

    // Ctrl-C under `npm run demo` delivers SIGINT twice: from the terminal and forwarded by npm
    demo.child.kill('SIGINT');
    demo.child.kill('SIGINT');
    expect(await demo.exit).toBe(0);
    expect(demo.stdout()).toContain('demo stopped');
    for (const name of PORT_VARS) {
      expect(await refused(demo.ports[name]!), `${name} is closed after the demo stopped`).toBe(true);
    }
  }, 120_000);

  it('refuses to start, naming the variable to set, when a port is taken', async () => {
    const squatter = await startUpstream();
    const demo = startDemo({ ...(await freePorts()), DEMO_ADMIN_PORT: squatter.port });
    expect(await demo.exit).toBe(1);
    expect(demo.stderr()).toContain(`port ${squatter.port} for gatehouse's admin API is not available (already in use); set DEMO_ADMIN_PORT to a free port`);
    expect(squatter.received).toHaveLength(0);
  }, 60_000);
});
