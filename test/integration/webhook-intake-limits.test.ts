import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { spawnGatehouse } from '../helpers/process.js';
import { reply, startUpstream } from '../helpers/upstream.js';

const SECRET = 'whsec_intake_limits_secret';
const stripe = new Stripe('sk_test_unused');

const yaml = (upstream: string, extra = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { store: { endpoints: [${upstream}] } }
routes:
  - name: stripe-webhooks
    listener: in
    match: { path: /webhooks/stripe, methods: [POST] }
    upstream: store
    maxBodySize: 2mb
    webhook: { provider: stripe, secret: ${SECRET}, tolerance: 5m${extra} }
`;

const nowS = () => Math.floor(performance.timeOrigin / 1000 + performance.now() / 1000);
/** A well-formed Stripe-Signature that cannot be checked before the body: a v1 of the right size. */
const signatureHeader = (t: number) => `t=${t},v1=${'ab'.repeat(32)}`;

/** Opens a connection and sends a webhook's head (and `bodyStart`), announcing `length` body bytes. */
async function openBody(port: number, signature: string, length: number, bodyStart = ''): Promise<{ socket: Socket; answer: Promise<string> }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  onCleanup(() => socket.destroy());
  await once(socket, 'connect');
  let text = '';
  const answer = new Promise<string>((resolve) => {
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (text.includes('\r\n\r\n')) resolve(text);
    });
    socket.on('close', () => resolve(text));
  });
  socket.write(
    `POST /webhooks/stripe HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nStripe-Signature: ${signature}\r\nContent-Length: ${length}\r\n\r\n${bodyStart}`,
  );
  return { socket, answer };
}

const within = <T>(p: Promise<T>, ms: number): Promise<T | undefined> => Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))]);

describe('webhook intake limits (SPEC §3.1)', () => {
  it('refuses a stale t= before reading the body: 300 slow 1 MB bodies get 401 at their headers, RSS stays flat, nothing is stored', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await spawnGatehouse(yaml(up.url));
    const port = Number(new URL(g.url('in')).port);
    const before = g.memory().rss;
    const stale = signatureHeader(nowS() - 3600);
    const MB = 1024 * 1024;
    const opened = await Promise.all(Array.from({ length: 300 }, () => openBody(port, stale, MB)));
    // every one is answered while not a byte of its body has been sent
    const answers = await Promise.all(opened.map((o) => within(o.answer, 5_000)));
    for (const a of answers) {
      expect(a).toMatch(/^HTTP\/1\.1 401 /);
      expect(a).toMatch(/gatehouse-error: invalid_signature/i);
      expect(a).toMatch(/connection: close/i);
    }
    // a sender that goes on anyway is cut off; the bodies are not kept
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (const o of opened) for (let i = 0; i < 16 && !o.socket.destroyed; i++) o.socket.write(chunk);
    await Promise.all(opened.map((o) => (o.socket.closed ? Promise.resolve() : within(new Promise((r) => o.socket.once('close', r)), 5_000))));
    expect(opened.every((o) => o.socket.closed)).toBe(true);
    expect(g.memory().rss - before).toBeLessThan(64 * MB);
    expect(up.received).toHaveLength(0);
    const recent = await request(g.admin('/admin/webhooks/recent?route=stripe-webhooks'));
    expect(recent.json().events).toEqual([]);
    await eventually(() => g.accessLog().filter((l) => l.status === 401).length === 300);
  });

  it('reads at most webhook.maxConcurrent (64) bodies at once per route: the 65th gets 503 overloaded before its body is read', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(yaml(up.url));
    const port = Number(new URL(g.url('in')).port);
    const fresh = signatureHeader(nowS());
    // 64 providers that send a head and the first bytes of 100 kB, then stall
    const holders = await Promise.all(Array.from({ length: 64 }, () => openBody(port, fresh, 100_000, '{"id":"evt_')));
    let refused: string | undefined;
    for (let probes = 0; probes < 8 && refused === undefined; probes++) {
      const probe = await openBody(port, fresh, 100_000, '{"id":"evt_');
      refused = await within(probe.answer, 1_500);
      if (refused === undefined) holders.push(probe); // answered nothing: it took a slot after all
    }
    expect(holders).toHaveLength(64);
    expect(refused).toMatch(/^HTTP\/1\.1 503 /);
    expect(refused).toMatch(/gatehouse-error: overloaded/i);
    expect(refused).toMatch(/retry-after: 1/i);
    expect(refused).toMatch(/connection: close/i);
    for (const h of holders) expect(await within(h.answer, 10)).toBeUndefined();

    // a provider that gives up frees its slot: the next event is read, verified and stored
    holders.pop()!.socket.destroy();
    const body = JSON.stringify({ id: 'evt_after', object: 'event' });
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      const res = await g.fetch('in', '/webhooks/stripe', {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET }) },
      });
      status = res.status;
    }
    expect(status).toBe(200);
    const metrics = (await request(g.admin('/metrics'))).text;
    expect(metrics).toMatch(/gatehouse_webhook_events_total\{route="stripe-webhooks",result="overloaded"\} [1-9]/);
  });

  it('answers Expect: 100-continue with the refusal, not with 100, when the signature header is stale', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(yaml(up.url));
    const port = Number(new URL(g.url('in')).port);
    const ask = async (signature: string) => {
      const socket = connect(port, '127.0.0.1');
      onCleanup(() => socket.destroy());
      await once(socket, 'connect');
      socket.write(`POST /webhooks/stripe HTTP/1.1\r\nHost: shop.test\r\nStripe-Signature: ${signature}\r\nContent-Length: 500000\r\nExpect: 100-continue\r\n\r\n`);
      const [first] = (await once(socket, 'data')) as [Buffer];
      return first.toString('latin1');
    };
    const stale = await ask(signatureHeader(nowS() - 3600));
    expect(stale).toMatch(/^HTTP\/1\.1 401 /);
    expect(stale).not.toContain('100 Continue');
    expect(await ask(signatureHeader(nowS()))).toMatch(/^HTTP\/1\.1 100 Continue/);
  });

  it('honours a smaller maxConcurrent', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await startGatehouse(yaml(up.url, ', maxConcurrent: 2'));
    const port = Number(new URL(g.url('in')).port);
    const fresh = signatureHeader(nowS());
    const a = await openBody(port, fresh, 1000, '{');
    const b = await openBody(port, fresh, 1000, '{');
    expect(await within(Promise.race([a.answer, b.answer]), 300)).toBeUndefined();
    const c = await openBody(port, fresh, 1000, '{');
    expect(await within(c.answer, 5_000)).toMatch(/^HTTP\/1\.1 503 /);
    expect(up.received).toHaveLength(0);
  });
});
