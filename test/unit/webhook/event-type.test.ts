import { describe, expect, it } from 'vitest';
import type { WebhookConfig } from '../../../src/config/schema.js';
import { loadConfigText } from '../../../src/config/load.js';
import { compileEventType } from '../../../src/webhook/event-type.js';
import type { SignedRequest } from '../../../src/webhook/signature.js';
import { compileTypeFilter, matchesGlob } from '../../../src/webhook/type-filter.js';

function webhookOf(block: string): WebhookConfig {
  const config = loadConfigText(
    `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [http://127.0.0.1:1] } }
routes: [{ name: r, listener: in, upstream: app, webhook: ${block} }]
`,
    'g.yaml',
    { env: {} },
  );
  return config.config.routes[0]!.webhook!;
}

function request(headers: Record<string, string>, body: string): SignedRequest {
  return {
    body: Buffer.from(body),
    header: (name) => headers[name],
    json: () => {
      try {
        return JSON.parse(body) as unknown;
      } catch {
        return undefined;
      }
    },
  };
}

describe('event type, read where each provider puts it (SPEC §14)', () => {
  it('Stripe and Standard Webhooks: the JSON body\'s type', () => {
    const stripe = compileEventType(webhookOf('{ provider: stripe, secret: whsec_x }'));
    expect(stripe(request({}, '{"id":"evt_1","object":"event","type":"charge.succeeded"}'))).toBe('charge.succeeded');
    expect(stripe(request({}, '{"id":"evt_1"}'))).toBeUndefined();
    expect(stripe(request({}, 'not json'))).toBeUndefined();
    expect(stripe(request({}, '{"type":{"nested":true}}'))).toBeUndefined();
    const standard = compileEventType(webhookOf('{ provider: standard, secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw }'));
    expect(standard(request({}, '{"type":"invoice.paid","data":{}}'))).toBe('invoice.paid');
  });

  it('Shopify: X-Shopify-Topic; GitHub: X-GitHub-Event', () => {
    const shopify = compileEventType(webhookOf('{ provider: shopify, secret: s }'));
    expect(shopify(request({ 'x-shopify-topic': 'orders/create' }, '{"type":"ignored"}'))).toBe('orders/create');
    expect(shopify(request({}, '{}'))).toBeUndefined();
    const github = compileEventType(webhookOf('{ provider: github, secret: s }'));
    expect(github(request({ 'x-github-event': 'push' }, '{}'))).toBe('push');
    expect(github(request({ 'x-github-event': '' }, '{}'))).toBeUndefined();
  });

  it('hmac: where eventType says, or none', () => {
    const byHeader = compileEventType(webhookOf('{ provider: hmac, secret: s, header: x-sig, eventId: "header:x-id", eventType: "header:X-Event" }'));
    expect(byHeader(request({ 'x-event': 'order.paid' }, '{}'))).toBe('order.paid');
    const byJson = compileEventType(webhookOf('{ provider: hmac, secret: s, header: x-sig, eventId: "header:x-id", eventType: "json:meta.kind" }'));
    expect(byJson(request({}, '{"meta":{"kind":"refund.created"}}'))).toBe('refund.created');
    const none = compileEventType(webhookOf('{ provider: hmac, secret: s, header: x-sig, eventId: "header:x-id" }'));
    expect(none(request({ 'x-event': 'a' }, '{"type":"b"}'))).toBeUndefined();
  });
});

describe('types filter: exact names or globs (SPEC §14)', () => {
  it('* matches any run of characters, dots and slashes included', () => {
    expect(matchesGlob('charge.*', 'charge.succeeded')).toBe(true);
    expect(matchesGlob('charge.*', 'charge.dispute.created')).toBe(true);
    expect(matchesGlob('charge.*', 'charge.')).toBe(true);
    expect(matchesGlob('charge.*', 'charge')).toBe(false);
    expect(matchesGlob('charge.*', 'payment_intent.charge.x')).toBe(false);
    expect(matchesGlob('orders/*', 'orders/create')).toBe(true);
    expect(matchesGlob('*.created', 'customer.subscription.created')).toBe(true);
    expect(matchesGlob('*.created', 'customer.created.later')).toBe(false);
    expect(matchesGlob('a*b*c', 'a-x-b-y-b-c')).toBe(true);
    expect(matchesGlob('a*b*c', 'a-x-b-y-b-d')).toBe(false);
    expect(matchesGlob('exact', 'exact')).toBe(true);
    expect(matchesGlob('exact', 'exactly')).toBe(false);
    // a glob character of regex syntax is just itself
    expect(matchesGlob('a.c', 'abc')).toBe(false);
    expect(matchesGlob('(x)+', '(x)+')).toBe(true);
  });

  it('stays fast on patterns built to make a matcher backtrack', () => {
    const text = 'a'.repeat(5000);
    const start = performance.now();
    expect(matchesGlob('*a*a*a*a*a*a*a*a*b', text)).toBe(false);
    expect(performance.now() - start).toBeLessThan(2000);
  });

  it('takes an event when any pattern matches; an event without a type only where a pattern is *', () => {
    const orders = compileTypeFilter(['checkout.session.completed', 'charge.*']);
    expect(orders('checkout.session.completed')).toBe(true);
    expect(orders('charge.refunded')).toBe(true);
    expect(orders('checkout.session.expired')).toBe(false);
    expect(orders(undefined)).toBe(false);
    const exactOnly = compileTypeFilter(['push']);
    expect(exactOnly('push')).toBe(true);
    expect(exactOnly('pull_request')).toBe(false);
    expect(exactOnly(undefined)).toBe(false);
    const every = compileTypeFilter(['charge.*', '*']);
    expect(every(undefined)).toBe(true);
    expect(every('anything/at.all')).toBe(true);
  });
});
