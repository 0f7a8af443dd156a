import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/errors.js';
import { loadConfigText } from '../../../src/config/load.js';

const base = (webhook: string) => `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  store: { endpoints: [http://127.0.0.1:1] }
  warehouse: { endpoints: [http://127.0.0.1:2] }
  stripe-api: { endpoints: [https://api.stripe.com] }
routes:
  - name: hooks
    listener: in
    upstream: store
    match: { path: /webhooks/stripe }
    webhook:
${webhook}`;

function problems(yaml: string): string[] {
  try {
    loadConfigText(yaml, 'g.yaml', { env: {} });
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

describe('webhook destinations and reconcile config (SPEC §14)', () => {
  it('reads the documented example with its defaults', () => {
    const { config } = loadConfigText(
      base(`      provider: stripe
      secret: whsec_test
      destinations:
        - name: orders
          upstream: store
          path: /hooks/orders
          types: ["checkout.session.completed", "charge.*"]
          rate: { limit: 10, per: 1s }
        - name: analytics
          upstream: warehouse
      reconcile: { upstream: stripe-api, every: 5m, lookback: 72h }
`),
      'g.yaml',
      { env: {} },
    );
    const webhook = config.routes[0]!.webhook!;
    expect(webhook.destinations).toEqual([
      { name: 'orders', upstream: 'store', path: '/hooks/orders', types: ['checkout.session.completed', 'charge.*'], rate: { limit: 10, per: 1000 } },
      { name: 'analytics', upstream: 'warehouse', types: ['*'] },
    ]);
    expect(webhook.reconcile).toEqual({ upstream: 'stripe-api', every: 300_000, lookback: 259_200_000, settle: 60_000 });
  });

  it('defaults: no destinations (the route\'s upstream), no reconcile; reconcile every 5m over 24h', () => {
    const { config } = loadConfigText(base('      { provider: stripe, secret: s, reconcile: { upstream: stripe-api } }\n'), 'g.yaml', { env: {} });
    const webhook = config.routes[0]!.webhook!;
    expect(webhook.destinations).toBeUndefined();
    expect(webhook.reconcile).toEqual({ upstream: 'stripe-api', every: 300_000, lookback: 86_400_000, settle: 60_000 });
  });

  it('reports unknown upstreams, duplicate names and bad fields with file:line:col', () => {
    const out = problems(
      base(`      provider: stripe
      secret: s
      destinations:
        - { name: orders, upstream: stor }
        - { name: orders, upstream: store, path: hooks/orders, types: [] }
        - { name: pace, upstream: store, rate: { limit: 0, per: 1s }, type: ["x"] }
        - { name: glob, upstream: store, types: ["charge succeeded"] }
      reconcile: { upstream: stripe, every: 10ms }
`),
    );
    expect(out).toEqual([
      'g.yaml:16:37 routes[0](hooks).webhook.destinations[0].upstream: unknown upstream "stor" (defined: store, warehouse, stripe-api)',
      'g.yaml:17:19 routes[0](hooks).webhook.destinations[1].name: duplicate destination name "orders"',
      'g.yaml:17:50 routes[0](hooks).webhook.destinations[1].path: must be a path such as /hooks/orders (starting with /, no query or spaces) (got "hooks/orders")',
      'g.yaml:17:71 routes[0](hooks).webhook.destinations[1].types: must list at least one event type (["*"] for every event)',
      'g.yaml:18:57 routes[0](hooks).webhook.destinations[2].rate.limit: must be an integer >= 1 (got 0)',
      'g.yaml:18:71 routes[0](hooks).webhook.destinations[2].type: unknown key (did you mean types?)',
      'g.yaml:19:50 routes[0](hooks).webhook.destinations[3].types[0]: must be an event type or a glob such as charge.* (printable, no spaces, at most 200 characters) (got "charge succeeded")',
      'g.yaml:20:30 routes[0](hooks).webhook.reconcile.upstream: unknown upstream "stripe" (defined: store, warehouse, stripe-api)',
      'g.yaml:20:45 routes[0](hooks).webhook.reconcile.every: must be at least 1s',
    ]);
  });

  it('refuses a duplicate destination name', () => {
    const out = problems(base('      { provider: github, secret: s, destinations: [{ name: a, upstream: store }, { name: a, upstream: warehouse }] }\n'));
    expect(out).toEqual([expect.stringMatching(/^g\.yaml:13:\d+ routes\[0\]\(hooks\)\.webhook\.destinations\[1\]\.name: duplicate destination name "a"$/)]);
  });

  it('refuses a lookback longer than dedupe.ttl, and reconcile for a provider without an event list', () => {
    expect(problems(base('      { provider: stripe, secret: s, dedupe: { ttl: 24h }, reconcile: { upstream: stripe-api, lookback: 48h } }\n'))).toEqual([
      expect.stringMatching(
        /^g\.yaml:13:\d+ routes\[0\]\(hooks\)\.webhook\.reconcile\.lookback: must not exceed dedupe\.ttl \(86400s\): an event must be remembered for as long as it can be listed$/,
      ),
    ]);
    expect(problems(base('      { provider: shopify, secret: s, reconcile: { upstream: stripe-api } }\n'))).toEqual([
      expect.stringMatching(/^g\.yaml:13:\d+ routes\[0\]\(hooks\)\.webhook\.reconcile: reconcile lists events of stripe only, not shopify$/),
    ]);
  });
});
