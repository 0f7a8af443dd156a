import { describe, expect, it } from 'vitest';
import { createMemoryMirrorStore, freshState, reserve, settle } from '../../../src/budget/mirror.js';
import { queryKeyOf, readCallLimit, readCost } from '../../../src/budget/shopify.js';

const SHAPE = { capacity: 100, rate: 50 };

describe('budget mirror', () => {
  it('reserves what the bucket holds and says how long the rest takes to restore', () => {
    const s = freshState(SHAPE, 0);
    expect(reserve(s, 60, 0)).toEqual({ ok: true });
    expect(reserve(s, 60, 0)).toEqual({ ok: false, waitMs: 400, paused: false }); // 20 short at 50/s
    settle(s, { reserved: 60, charged: 60 }, 0);
    expect(reserve(s, 60, 400)).toEqual({ ok: true });
  });

  it('settles by the actual cost: the difference to the reservation goes back', () => {
    const s = freshState(SHAPE, 0);
    reserve(s, 50, 0);
    settle(s, { reserved: 50, charged: 20 }, 0);
    expect(s.level).toBe(80);
    expect(s.inflight).toBe(0);
  });

  it('resets from the provider\'s figures less what others hold in flight', () => {
    const s = freshState(SHAPE, 0);
    reserve(s, 30, 0);
    reserve(s, 10, 0);
    settle(s, { reserved: 10, charged: 10, reset: { capacity: 1000, available: 500, rate: 100 }, answeredAt: 5 }, 0);
    expect(s).toMatchObject({ capacity: 1000, rate: 100, level: 470, inflight: 30 });
    // an older answer settled later only refunds: it does not undo the newer figures
    settle(s, { reserved: 30, charged: 30, reset: { capacity: 1000, available: 900, rate: 100 }, answeredAt: 4 }, 0);
    expect(s).toMatchObject({ level: 470, inflight: 0 });
  });

  it('a cost above the whole bucket goes once the bucket is full, instead of waiting for ever', () => {
    const s = freshState(SHAPE, 0);
    expect(reserve(s, 150, 0)).toEqual({ ok: true });
    expect(reserve(s, 1, 0).ok).toBe(false);
  });

  it('pauses a key', () => {
    const store = createMemoryMirrorStore('m', () => 0);
    void store.settle('k', { reserved: 0, charged: 0, pauseMs: 500 }, { capacity: 0, rate: 0 });
    expect(store.reserve('k', 0, { capacity: 0, rate: 0 })).toEqual({ ok: false, waitMs: 500, paused: true });
    expect(store.view('k')).toMatchObject({ pausedForMs: 500 });
  });
});

describe('shopify answers', () => {
  const cost = { requestedQueryCost: 52, actualQueryCost: 12, throttleStatus: { maximumAvailable: 2000, currentlyAvailable: 1988, restoreRate: 100 } };

  it('reads the cost and THROTTLED from a whole answer', () => {
    expect(readCost(Buffer.from(JSON.stringify({ data: {}, extensions: { cost } })), true)).toEqual({
      requested: 52,
      actual: 12,
      throttled: false,
      bucket: { capacity: 2000, available: 1988, restoreRate: 100 },
    });
    const throttled = { errors: [{ message: 'Throttled', extensions: { code: 'THROTTLED' } }], extensions: { cost: { ...cost, actualQueryCost: null } } };
    expect(readCost(Buffer.from(JSON.stringify(throttled)), true)).toMatchObject({ requested: 52, actual: undefined, throttled: true });
    expect(readCost(Buffer.from('not json'), true)).toBeUndefined();
  });

  it('reads the cost from the last bytes of a long answer', () => {
    const body = JSON.stringify({ data: { items: 'x'.repeat(100_000), note: '"cost": {' }, extensions: { cost } });
    const tail = Buffer.from(body).subarray(-4096);
    expect(readCost(tail, false)).toMatchObject({ requested: 52, actual: 12, bucket: { available: 1988 } });
    expect(readCost(Buffer.from('..."cost": {"requestedQueryCost": 5'), false)).toBeUndefined(); // cut: nothing read
  });

  it('knows a query by its text with white space collapsed', () => {
    const a = queryKeyOf(Buffer.from(JSON.stringify({ query: 'query  Q {\n  shop { name }\n}' })));
    const b = queryKeyOf(Buffer.from(JSON.stringify({ query: 'query Q { shop { name } }', variables: { x: 1 } })));
    expect(a).toBe('query Q { shop { name } }');
    expect(b).toBe(a);
    expect(queryKeyOf(Buffer.from(JSON.stringify({ query: `query Long { ${'f '.repeat(300)} }` })))).toMatch(/^#/);
    expect(queryKeyOf(Buffer.from('{}'))).toBeUndefined();
    expect(queryKeyOf(null)).toBeUndefined();
  });

  it('reads X-Shopify-Shop-Api-Call-Limit', () => {
    expect(readCallLimit('32/40')).toEqual({ used: 32, size: 40 });
    expect(readCallLimit('x/40')).toBeUndefined();
    expect(readCallLimit(undefined)).toBeUndefined();
  });
});
