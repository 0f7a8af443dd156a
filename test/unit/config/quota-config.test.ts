import { describe, expect, it } from 'vitest';
import { ConfigError, formatProblem } from '../../../src/config/errors.js';
import { loadConfigText } from '../../../src/config/load.js';

const head = `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: ["http://127.0.0.1:1"] } }
stores:
  disk: { type: sqlite }
  shared: { type: redis, url: "redis://127.0.0.1:6379" }
`;

function problems(yaml: string): string[] {
  try {
    loadConfigText(head + yaml, 'gatehouse.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(formatProblem);
    throw err;
  }
  return [];
}

describe('quota config', () => {
  it('accepts named and inline quotas with every key', () => {
    const loaded = loadConfigText(
      head +
        `quotas:
  shopify-api: { limit: 2, per: 1s, burst: 40, key: global, onExceed: queue, maxWait: 10s, maxQueue: 1000, store: shared }
routes:
  - name: r
    listener: in
    upstream: app
    priority: low
    quota: [shopify-api, { limit: 10, per: 1m, key: "header:x-api-key" }]
`,
      'gatehouse.yaml',
    );
    const route = loaded.config.routes[0]!;
    expect(route.priority).toBe('low');
    expect(route.quota).toEqual(['shopify-api', { limit: 10, per: 60_000, key: 'header:x-api-key', onExceed: 'reject', maxKeys: 100_000 }]);
    expect(loaded.config.quotas['shopify-api']).toMatchObject({ per: 1000, maxWait: 10_000, store: 'shared' });
  });

  it('takes sub-second windows: limit 1 per 500ms paces one request every half second', () => {
    const loaded = loadConfigText(`${head}quotas:\n  pace: { limit: 1, per: 500ms }\n  fine: { limit: 3, per: 1500ms }\n`, 'gatehouse.yaml');
    expect(loaded.config.quotas.pace).toMatchObject({ limit: 1, per: 500 });
    expect(loaded.config.quotas.fine).toMatchObject({ limit: 3, per: 1500 });
  });

  it('reports wrong values with their position', () => {
    expect(
      problems(`quotas:
  a: { limit: 0, per: 0s, key: cookie }
  b: { limit: 1, per: 1s, maxWait: 1s }
  c: { limit: 1, per: 1s, onExceed: wait }
`),
    ).toEqual([
      'gatehouse.yaml:8:15 quotas.a.limit: must be an integer >= 1 (got 0)',
      'gatehouse.yaml:8:23 quotas.a.per: must be a duration of at least 1ms, such as 500ms, 1s or 1h',
      'gatehouse.yaml:8:32 quotas.a.key: must be global, ip, header:<name> or jwt:<claim>',
      'gatehouse.yaml:9:36 quotas.b.maxWait: only applies with onExceed: queue',
      'gatehouse.yaml:10:37 quotas.c.onExceed: must be one of "reject", "queue" (got "wait")',
    ]);
  });

  it('checks references: quota names, stores for quotas, and no quota twice on a route', () => {
    expect(
      problems(`quotas:
  a: { limit: 1, per: 1s, store: disk }
  b: { limit: 1, per: 1s, store: nowhere }
routes:
  - { name: r, listener: in, upstream: app, quota: [a, a, missing] }
  - { name: s, listener: in, upstream: app, quota: [{ limit: 1, per: 1s, store: shared }] }
`),
    ).toEqual([
      'gatehouse.yaml:8:34 quotas.a.store: store "disk" is sqlite: quotas use a memory or redis store',
      'gatehouse.yaml:9:34 quotas.b.store: unknown store "nowhere" (defined: disk, shared)',
      'gatehouse.yaml:11:56 routes[0](r).quota[1]: quota "a" is listed twice',
      'gatehouse.yaml:11:59 routes[0](r).quota[2]: unknown quota "missing" (defined: a, b)',
    ]);
  });

  it('refuses jwt: keys on a route without jwt', () => {
    expect(
      problems(`quotas:
  per-user: { limit: 1, per: 1s, key: "jwt:sub" }
routes:
  - { name: r, listener: in, upstream: app, quota: [per-user, { limit: 5, per: 1s, key: "jwt:tenant" }] }
`),
    ).toEqual([
      'gatehouse.yaml:10:53 routes[0](r).quota[0]: quota "per-user" counts by "jwt:sub", which needs jwt on this route',
      'gatehouse.yaml:10:89 routes[0](r).quota[1].key: counts by "jwt:tenant", which needs jwt on this route',
    ]);
  });

  it('refuses a named quota that takes the name of an inline one, and a wrong priority', () => {
    expect(
      problems(`quotas:
  r-0: { limit: 1, per: 1s }
routes:
  - { name: r, listener: in, upstream: app, priority: urgent, quota: [{ limit: 1, per: 1s }] }
`),
    ).toEqual([
      'gatehouse.yaml:10:55 routes[0](r).priority: must be one of "high", "normal", "low" (got "urgent")',
      'gatehouse.yaml:10:71 routes[0](r).quota[0]: this inline quota is named "r-0", which quotas.r-0 already uses',
    ]);
  });
});
