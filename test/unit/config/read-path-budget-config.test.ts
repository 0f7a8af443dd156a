import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/errors.js';
import { loadConfigText } from '../../../src/config/load.js';

const config = (upstream: string, route: string) => `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  shop: { endpoints: [http://127.0.0.1:1]${upstream} }
routes:
  - { name: r, listener: in, match: { pathPrefix: / }, upstream: shop${route} }
`;

function problems(yaml: string): string[] {
  try {
    loadConfigText(yaml, 'g.yaml', { env: {} });
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

// A cache fill, a coalesced or a hedged try would reach the provider without its budget's
// admission: the combination is refused at load rather than silently bypassing the budget.
describe('a read path on a route whose upstream has a budget', () => {
  it.each([
    [', budget: { kind: shopify-rest }', ', cache: {}', 'cache'],
    [', concurrency: { limit: 4 }', ', coalesce: true', 'coalesce'],
    [', concurrency: { limit: adaptive }', ', hedge: { after: 50ms }', 'hedge'],
  ])('upstream%s with route%s is refused at the route key', (upstream, route, key) => {
    expect(problems(config(upstream, route))).toEqual([
      expect.stringMatching(new RegExp(`^g\\.yaml:6:\\d+ routes\\[0\\]\\(r\\)\\.${key}: not supported yet on a route whose upstream has a budget or a concurrency limit \\(upstreams\\.shop\\)$`)),
    ]);
  });

  it('is accepted on either side alone', () => {
    expect(problems(config(', budget: { kind: shopify-rest }', ''))).toEqual([]);
    expect(problems(config('', ', cache: {}, coalesce: true, hedge: { after: 50ms }'))).toEqual([]);
  });
});
