import { describe, expect, it } from 'vitest';
import Stripe from 'stripe';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { startUpstream, reply } from '../helpers/upstream.js';

const SECRET = 'whsec_test_secret_for_gatehouse';
const stripe = new Stripe('sk_test_unused');

const stripeEvent = (id: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id, object: 'event', type: 'payment_intent.succeeded', data: { object: { id: 'pi_1', amount: 4200 } }, ...extra });

const signStripe = (payload: string, secret = SECRET, timestamp?: number) =>
  stripe.webhooks.generateTestHeaderString({ payload, secret, ...(timestamp === undefined ? {} : { timestamp }) });

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
