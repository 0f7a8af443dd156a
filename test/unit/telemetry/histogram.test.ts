import { describe, expect, it } from 'vitest';
import { createKeyedHistogram, histogramProducer } from '../../../src/telemetry/histogram.js';

const make = () =>
  createKeyedHistogram(
    { name: 'http.server.request.duration', description: 'd', unit: 's', boundaries: [0.01, 0.1, 1], attributeNames: ['route', 'status', 'error.type'] },
    () => 1_700_000_000_000,
  );

describe('keyed histogram', () => {
  it('counts each value in the bucket whose upper bound includes it, per attribute set', () => {
    const h = make();
    for (const v of [0.005, 0.01, 0.05, 0.5, 3]) h.record(v, { route: 'a', status: 200 });
    h.record(0.2, { route: 'a', status: 500, 'error.type': 'bad_gateway' });
    h.record(0.2, { route: 'b', status: 200 });
    const data = h.collect([1_700_000_001, 0]);
    expect(data.dataPoints).toHaveLength(3);
    const a200 = data.dataPoints[0]!;
    expect(a200.attributes).toEqual({ route: 'a', status: 200 });
    expect(a200.value).toEqual({ buckets: { boundaries: [0.01, 0.1, 1], counts: [2, 1, 1, 1] }, count: 5, sum: 3.565, min: 0.005, max: 3 });
    expect(data.dataPoints[1]!.attributes).toEqual({ route: 'a', status: 500, 'error.type': 'bad_gateway' });
    expect(data.dataPoints[2]!.value.count).toBe(1);
  });

  it('keeps undefined attributes out of the series and apart from a set value', () => {
    const h = make();
    h.record(0.1, { route: 'a', status: 200, 'error.type': undefined });
    h.record(0.1, { route: 'a', status: 200 });
    h.record(0.1, { route: 'a', status: 200, 'error.type': 'timeout' });
    const points = h.collect([0, 0]).dataPoints;
    expect(points.map((p) => [p.attributes, p.value.count])).toEqual([
      [{ route: 'a', status: 200 }, 2],
      [{ route: 'a', status: 200, 'error.type': 'timeout' }, 1],
    ]);
  });

  it('takes the values in attributeNames order from an array the caller refills, keeping copies', () => {
    const h = make();
    const values: (string | number | undefined)[] = ['a', 200, undefined];
    h.recordValues(0.1, values);
    values[1] = 503;
    values[2] = '503';
    h.recordValues(0.2, values);
    h.record(0.3, { route: 'a', status: 200 }); // the same series as the first
    const points = h.collect([0, 0]).dataPoints;
    expect(points.map((p) => [p.attributes, p.value.count])).toEqual([
      [{ route: 'a', status: 200 }, 2],
      [{ route: 'a', status: 503, 'error.type': '503' }, 1],
    ]);
  });

  it('puts series past 2000 into the otel.metric.overflow series, as the SDK does', () => {
    const h = make();
    for (let i = 0; i < 2005; i++) h.record(0.1, { route: `r${i}`, status: 200 });
    const points = h.collect([0, 0]).dataPoints;
    expect(points).toHaveLength(2001);
    expect(points.at(-1)).toMatchObject({ attributes: { 'otel.metric.overflow': true }, value: { count: 5 } });
  });

  it('is handed to metric readers by the producer in the given scope', async () => {
    const h = make();
    h.record(0.1, { route: 'a', status: 200 });
    const result = await histogramProducer('gatehouse', [h], () => 1_700_000_000_000).collect();
    expect(result.errors).toEqual([]);
    expect(result.resourceMetrics.scopeMetrics[0]!.scope.name).toBe('gatehouse');
    expect(result.resourceMetrics.scopeMetrics[0]!.metrics[0]!.descriptor.name).toBe('http.server.request.duration');
  });
});
