import { createHmac } from 'node:crypto';
import { sign as signGithub } from '@octokit/webhooks-methods';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../../src/config/load.js';
import type { WebhookConfig } from '../../../src/config/schema.js';
import { safeEqual, type SignedRequest } from '../../../src/webhook/signature.js';
import { compileHeaderCheck, compileVerifier } from '../../../src/webhook/verify.js';

const stripe = new Stripe('sk_test_unused');
const NOW_S = 1_700_000_000;
const NOW = NOW_S * 1000;

/** The route's webhook block as the config loader produces it. */
function webhook(block: string): WebhookConfig {
  const { config } = loadConfigText(
    `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [http://127.0.0.1:1] } }
routes:
  - name: hooks
    listener: in
    upstream: app
    webhook:
${block.replace(/^/gm, '      ')}
`,
    'test.yaml',
  );
  return config.routes[0]!.webhook!;
}

function request(body: string | Buffer, headers: Record<string, string>): SignedRequest {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return {
    body: bytes,
    header: (name) => lower[name],
    json: () => {
      try {
        return JSON.parse(bytes.toString()) as unknown;
      } catch {
        return undefined;
      }
    },
  };
}

describe('stripe signatures (made by the stripe SDK)', () => {
  const verify = compileVerifier(webhook('provider: stripe\nsecret: whsec_current\ntolerance: 5m'));
  const body = JSON.stringify({ id: 'evt_123', type: 'charge.succeeded' });

  it('accepts a signature from the stripe SDK and takes the event id from the body', () => {
    const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_current', timestamp: NOW_S });
    expect(verify(request(body, { 'Stripe-Signature': header }), NOW)).toEqual({ ok: true, eventId: 'evt_123' });
  });

  it('rejects a tampered body', () => {
    const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_current', timestamp: NOW_S });
    const v = verify(request(body.replace('123', '124'), { 'stripe-signature': header }), NOW);
    expect(v).toEqual({ ok: false, reason: 'no v1 signature matches the body' });
  });

  it('rejects a timestamp outside the tolerance, in either direction', () => {
    for (const t of [NOW_S - 301, NOW_S + 301]) {
      const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_current', timestamp: t });
      const v = verify(request(body, { 'stripe-signature': header }), NOW);
      expect(v.ok).toBe(false);
      expect(!v.ok && v.reason).toMatch(/outside the replay window of 300s/);
    }
    const inside = stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_current', timestamp: NOW_S - 299 });
    expect(verify(request(body, { 'stripe-signature': inside }), NOW).ok).toBe(true);
  });

  it('rejects a missing header, a header without v1 and a wrong secret', () => {
    expect(verify(request(body, {}), NOW)).toEqual({ ok: false, reason: 'the Stripe-Signature header is missing' });
    expect(verify(request(body, { 'stripe-signature': `t=${NOW_S}` }), NOW)).toEqual({ ok: false, reason: 'Stripe-Signature carries no v1 signature' });
    const wrong = stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_other', timestamp: NOW_S });
    expect(verify(request(body, { 'stripe-signature': wrong }), NOW).ok).toBe(false);
  });

  it('accepts any of several v1 signatures and any of two secrets during a rotation', () => {
    const rotating = compileVerifier(webhook('provider: stripe\nsecrets: [whsec_old, whsec_new]'));
    for (const secret of ['whsec_old', 'whsec_new']) {
      const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp: NOW_S });
      expect(rotating(request(body, { 'stripe-signature': header }), NOW).ok).toBe(true);
    }
    // Stripe signs with both secrets while a roll is in progress: t=..,v1=<old>,v1=<new>
    const newSig = stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_other', timestamp: NOW_S }).split(',')[1]!;
    const oldSig = stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_current', timestamp: NOW_S }).split(',')[1]!;
    expect(verify(request(body, { 'stripe-signature': `t=${NOW_S},${newSig},${oldSig}` }), NOW).ok).toBe(true);
  });
});

describe('github signatures (made by @octokit/webhooks-methods)', () => {
  const verify = compileVerifier(webhook('provider: github\nsecrets: [old-secret, new-secret]'));
  const body = JSON.stringify({ action: 'opened', number: 7 });

  it('accepts X-Hub-Signature-256 from octokit with either secret; the id is X-GitHub-Delivery', async () => {
    for (const secret of ['old-secret', 'new-secret']) {
      const sig = await signGithub(secret, body);
      expect(verify(request(body, { 'X-Hub-Signature-256': sig, 'X-GitHub-Delivery': 'd-1' }), NOW)).toEqual({ ok: true, eventId: 'd-1' });
    }
  });

  it('rejects a tampered body, a missing header and a signature without sha256=', async () => {
    const sig = await signGithub('new-secret', body);
    expect(verify(request(body + ' ', { 'x-hub-signature-256': sig }), NOW).ok).toBe(false);
    expect(verify(request(body, {}), NOW)).toEqual({ ok: false, reason: 'the X-Hub-Signature-256 header is missing' });
    expect(verify(request(body, { 'x-hub-signature-256': sig.slice(7) }), NOW).ok).toBe(false);
  });
});

describe('shopify signatures (per shopify.dev: base64 HMAC-SHA256 of the raw body)', () => {
  const verify = compileVerifier(webhook('provider: shopify\nsecret: shpss_app_secret'));
  const body = Buffer.from(JSON.stringify({ id: 820982911946154500, email: 'jon@example.com' }));
  const shopifySign = (secret: string, raw: Buffer) => createHmac('sha256', secret).update(raw).digest('base64');

  it('accepts X-Shopify-Hmac-Sha256; the id is X-Shopify-Webhook-Id', () => {
    const v = verify(request(body, { 'X-Shopify-Hmac-Sha256': shopifySign('shpss_app_secret', body), 'X-Shopify-Webhook-Id': 'b54557e4' }), NOW);
    expect(v).toEqual({ ok: true, eventId: 'b54557e4' });
  });

  it('rejects a tampered body and another secret', () => {
    const tampered = Buffer.from(body.toString().replace('jon', 'eve'));
    expect(verify(request(tampered, { 'x-shopify-hmac-sha256': shopifySign('shpss_app_secret', body) }), NOW).ok).toBe(false);
    expect(verify(request(body, { 'x-shopify-hmac-sha256': shopifySign('other', body) }), NOW).ok).toBe(false);
  });
});

describe('standard webhooks signatures (the specification\'s test vector)', () => {
  // standard-webhooks spec / svix libraries: this secret, id, timestamp and payload give this signature
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const payload = '{"test": 2432232314}';
  const headers = {
    'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    'webhook-timestamp': '1614265330',
    'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
  };
  const at = 1614265330 * 1000;

  it('accepts the test vector; the event id is webhook-id', () => {
    const verify = compileVerifier(webhook(`provider: standard\nsecret: ${secret}`));
    expect(verify(request(payload, headers), at)).toEqual({ ok: true, eventId: 'msg_p5jXN8AQM9LWM0D4loKWxJek' });
  });

  it('accepts any signature of a space-separated list, and svix-* headers', () => {
    const verify = compileVerifier(webhook(`provider: standard\nsecrets: [whsec_${Buffer.alloc(24, 7).toString('base64')}, ${secret}]`));
    const list = { ...headers, 'webhook-signature': `v1,bm9wZW5vcGVub3Blbm9wZW5vcGVub3Blbm9wZW5vcGU= ${headers['webhook-signature']}` };
    expect(verify(request(payload, list), at).ok).toBe(true);
    const svix = { 'svix-id': headers['webhook-id'], 'svix-timestamp': headers['webhook-timestamp'], 'svix-signature': headers['webhook-signature'] };
    expect(verify(request(payload, svix), at).ok).toBe(true);
  });

  it('rejects a stale timestamp, a tampered body and a tampered id', () => {
    const verify = compileVerifier(webhook(`provider: standard\nsecret: ${secret}\ntolerance: 5m`));
    expect(verify(request(payload, headers), at + 301_000)).toMatchObject({ ok: false });
    expect(verify(request('{"test": 2432232315}', headers), at).ok).toBe(false);
    expect(verify(request(payload, { ...headers, 'webhook-id': 'msg_other' }), at).ok).toBe(false);
  });
});

describe('hmac signatures (header, algorithm, encoding, prefix, event id configurable)', () => {
  const body = JSON.stringify({ event: { id: 'ev-9' }, kind: 'order.created' });

  it('checks sha512/base64 with a prefix and reads the event id from the JSON body', () => {
    const verify = compileVerifier(
      webhook('provider: hmac\nsecret: s3cret\nheader: X-Signature\nalgorithm: sha512\nencoding: base64\nprefix: "sha512="\neventId: json:event.id'),
    );
    const sig = 'sha512=' + createHmac('sha512', 's3cret').update(body).digest('base64');
    expect(verify(request(body, { 'x-signature': sig }), NOW)).toEqual({ ok: true, eventId: 'ev-9' });
    expect(verify(request(body, { 'x-signature': sig.replace('sha512=', '') }), NOW).ok).toBe(false);
  });

  it('checks sha256/hex by default and reads the event id from a header', () => {
    const verify = compileVerifier(webhook('provider: hmac\nsecret: s3cret\nheader: X-Sig\neventId: header:X-Event-Id'));
    const sig = createHmac('sha256', 's3cret').update(body).digest('hex');
    expect(verify(request(body, { 'x-sig': sig.toUpperCase(), 'x-event-id': 'e-1' }), NOW)).toEqual({ ok: true, eventId: 'e-1' });
    expect(verify(request(body, { 'x-sig': sig.slice(2) }), NOW).ok).toBe(false);
  });
});

describe('header checks: what is refused before the body is read', () => {
  const headers = (h: Record<string, string>) => request('', h);
  const hex = 'ab'.repeat(32);
  const b64 = Buffer.alloc(32, 7).toString('base64');

  it('stripe: a fresh t= and a 32-byte v1 pass; missing, stale, future or malformed are refused', () => {
    const check = compileHeaderCheck(webhook('provider: stripe\nsecret: whsec_x\ntolerance: 5m'));
    expect(check(headers({ 'stripe-signature': `t=${NOW_S},v1=${hex}` }), NOW)).toBeUndefined();
    expect(check(headers({}), NOW)).toEqual({ ok: false, reason: 'the Stripe-Signature header is missing' });
    expect(check(headers({ 'stripe-signature': `t=${NOW_S - 3600},v1=${hex}` }), NOW)?.reason).toMatch(/outside the replay window of 300s/);
    expect(check(headers({ 'stripe-signature': `t=${NOW_S + 3600},v1=${hex}` }), NOW)?.reason).toMatch(/outside the replay window/);
    expect(check(headers({ 'stripe-signature': `v1=${hex}` }), NOW)?.reason).toMatch(/timestamp is missing/);
    expect(check(headers({ 'stripe-signature': `t=${NOW_S},v1=abcd` }), NOW)).toEqual({ ok: false, reason: 'Stripe-Signature carries no v1 signature' });
  });

  it('standard: webhook-id, a fresh webhook-timestamp and a v1 of 32 bytes', () => {
    const check = compileHeaderCheck(webhook(`provider: standard\nsecret: whsec_${Buffer.alloc(24, 1).toString('base64')}`));
    const ok = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(NOW_S), 'webhook-signature': `v1,${b64}` };
    expect(check(headers(ok), NOW)).toBeUndefined();
    expect(check(headers({ ...ok, 'webhook-timestamp': String(NOW_S - 3600) }), NOW)?.reason).toMatch(/webhook-timestamp: .*replay window/);
    expect(check(headers({ ...ok, 'webhook-id': '' }), NOW)?.reason).toBe('the webhook-id header is missing');
    expect(check(headers({ ...ok, 'webhook-signature': 'v1,AAAA' }), NOW)?.reason).toBe('webhook-signature carries no v1 signature');
  });

  it('github, shopify and hmac: the header present, with a signature of the digest size', () => {
    const github = compileHeaderCheck(webhook('provider: github\nsecret: s'));
    expect(github(headers({ 'x-hub-signature-256': `sha256=${hex}` }), NOW)).toBeUndefined();
    expect(github(headers({ 'x-hub-signature-256': `sha1=${hex}` }), NOW)?.reason).toBe('X-Hub-Signature-256 is not sha256=<64 hex digits>');
    const shopify = compileHeaderCheck(webhook('provider: shopify\nsecret: s'));
    expect(shopify(headers({ 'x-shopify-hmac-sha256': b64 }), NOW)).toBeUndefined();
    expect(shopify(headers({ 'x-shopify-hmac-sha256': 'not base64!' }), NOW)?.reason).toBe('X-Shopify-Hmac-Sha256 is not a base64 HMAC-SHA256');
    const hmac = compileHeaderCheck(webhook('provider: hmac\nsecret: s\nheader: X-Sig\nalgorithm: sha512\nprefix: "v="\neventId: header:X-Id'));
    expect(hmac(headers({ 'x-sig': `v=${'cd'.repeat(64)}` }), NOW)).toBeUndefined();
    expect(hmac(headers({ 'x-sig': `v=${hex}` }), NOW)?.reason).toBe('x-sig carries no sha512 signature in hex');
    expect(hmac(headers({}), NOW)?.reason).toBe('the x-sig header is missing');
  });
});

describe('the one constant-time compare', () => {
  it('is false for different lengths and different bytes, true only for equal bytes', () => {
    expect(safeEqual(Buffer.from('abc'), Buffer.from('abc'))).toBe(true);
    expect(safeEqual(Buffer.from('abc'), Buffer.from('abd'))).toBe(false);
    expect(safeEqual(Buffer.from('abc'), Buffer.from('abcd'))).toBe(false);
  });
});

describe('webhook config', () => {
  const fails = (block: string) => {
    try {
      webhook(block);
    } catch (err) {
      return (err as Error).message;
    }
    return 'no error';
  };

  it('needs exactly one of secret and secrets, and rejects keys of another provider', () => {
    expect(fails('provider: github')).toMatch(/routes\[0\]\(hooks\)\.webhook\.secret: set either secret or secrets/);
    expect(fails('provider: github\nsecret: a\nsecrets: [b]')).toMatch(/set either secret or secrets/);
    expect(fails('provider: shopify\nsecret: a\ntolerance: 5m')).toMatch(/routes\[0\]\(hooks\)\.webhook\.tolerance: unknown key/);
    expect(fails('provider: paypal\nsecret: a')).toMatch(/provider must be one of/);
  });

  it('checks a Standard Webhooks secret without printing it', () => {
    const message = fails('provider: standard\nsecret: "whsec_not base64!"');
    expect(message).toMatch(/routes\[0\]\(hooks\)\.webhook\.secret: must be a Standard Webhooks secret/);
    expect(message).not.toContain('not base64');
  });

  it('parses orderBy and eventId sources', () => {
    expect(webhook('provider: github\nsecret: a\ndelivery: { orderBy: "json:data.object.id" }').delivery.orderBy).toEqual({ from: 'json', path: ['data', 'object', 'id'] });
    expect(fails('provider: github\nsecret: a\ndelivery: { orderBy: "body:x" }')).toMatch(/must be header:<name> or json:<path>/);
    expect(fails('provider: hmac\nsecret: a\nheader: X-Sig')).toMatch(/routes\[0\]\(hooks\)\.webhook\.eventId: is required/);
  });
});
