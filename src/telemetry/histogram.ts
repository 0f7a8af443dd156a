import { ValueType, type Attributes, type AttributeValue, type HrTime } from '@opentelemetry/api';
import { millisToHrTime } from '@opentelemetry/core';
import {
  AggregationTemporality,
  DataPointType,
  type CollectionResult,
  type DataPoint,
  type Histogram,
  type HistogramMetricData,
  type MetricProducer,
} from '@opentelemetry/sdk-metrics';

/**
 * An explicit-bucket histogram for the per-request durations, exported through the OTel readers
 * (Prometheus, OTLP) as a MetricProducer. The SDK's own Histogram.record() sorts and
 * JSON-stringifies the attributes of every call to find the series (about 6% of a proxied
 * request's CPU for the two duration histograms); here the attribute names are fixed when the
 * histogram is made, and a series is found by walking one Map per name with the values.
 * Cumulative temporality, min/max kept, at most 2000 series (then the overflow series), like the SDK.
 */
export interface KeyedHistogram<Name extends string> {
  /** Records a value. Attributes outside `Name` cannot be given; undefined ones are left out. */
  record(value: number, attributes: { readonly [K in Name]?: AttributeValue | undefined }): void;
  /**
   * The same with the attribute values in `attributeNames` order: the request path's way, which
   * fills one array it keeps instead of making an object per call.
   */
  recordValues(value: number, values: ArrayLike<AttributeValue | undefined>): void;
}

export interface KeyedHistogramOptions<Name extends string> {
  readonly name: string;
  readonly description: string;
  readonly unit: string;
  readonly boundaries: readonly number[];
  /** Every attribute name a record may carry, in a fixed order. */
  readonly attributeNames: readonly Name[];
}

interface Series {
  readonly attributes: Attributes;
  readonly startTime: HrTime;
  readonly counts: number[];
  count: number;
  sum: number;
  min: number;
  max: number;
}

type Node = Map<AttributeValue | undefined, Node | Series>;

const CARDINALITY_LIMIT = 2000;
const OVERFLOW: Attributes = { 'otel.metric.overflow': true };

export function createKeyedHistogram<Name extends string>(
  options: KeyedHistogramOptions<Name>,
  wallClockMs: () => number,
): KeyedHistogram<Name> & { collect(endTime: HrTime): HistogramMetricData } {
  const { attributeNames: names, boundaries } = options;
  const last = names.length - 1;
  const root: Node = new Map();
  const all: Series[] = [];
  let overflow: Series | undefined;

  const newSeries = (attributes: Attributes): Series => {
    const s: Series = {
      attributes,
      startTime: millisToHrTime(wallClockMs()),
      counts: new Array<number>(boundaries.length + 1).fill(0),
      count: 0,
      sum: 0,
      min: Infinity,
      max: -Infinity,
    };
    all.push(s);
    return s;
  };

  const find = (values: ArrayLike<AttributeValue | undefined>): Series => {
    let node = root;
    for (let i = 0; i < last; i++) {
      const value = values[i];
      let next = node.get(value) as Node | undefined;
      if (next === undefined) {
        next = new Map();
        node.set(value, next);
      }
      node = next;
    }
    const value = values[last];
    let series = node.get(value) as Series | undefined;
    if (series === undefined) {
      if (all.length >= CARDINALITY_LIMIT) return (overflow ??= newSeries(OVERFLOW));
      const attributes: Attributes = {};
      for (let i = 0; i <= last; i++) if (values[i] !== undefined) attributes[names[i]!] = values[i];
      series = newSeries(attributes);
      node.set(value, series);
    }
    return series;
  };

  const recordValues = (value: number, values: ArrayLike<AttributeValue | undefined>): void => {
    if (Number.isNaN(value)) return;
    const s = find(values);
    let i = 0;
    while (i < boundaries.length && value > boundaries[i]!) i++;
    s.counts[i]!++;
    s.count++;
    s.sum += value;
    if (value < s.min) s.min = value;
    if (value > s.max) s.max = value;
  };

  return {
    record: (value, attrs) => recordValues(value, names.map((name) => attrs[name])),
    recordValues,
    collect(endTime) {
      const dataPoints: DataPoint<Histogram>[] = all.map((s) => ({
        startTime: s.startTime,
        endTime,
        attributes: s.attributes,
        value: {
          buckets: { boundaries: [...boundaries], counts: [...s.counts] },
          count: s.count,
          sum: s.sum,
          ...(s.count > 0 ? { min: s.min, max: s.max } : {}),
        },
      }));
      return {
        descriptor: { name: options.name, description: options.description, unit: options.unit, valueType: ValueType.DOUBLE },
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.HISTOGRAM,
        dataPoints,
      };
    },
  };
}

/** Hands histograms to the SDK's metric readers, in the scope the meter uses. */
export function histogramProducer(
  scope: string,
  histograms: readonly { collect(endTime: HrTime): HistogramMetricData }[],
  wallClockMs: () => number,
): MetricProducer {
  return {
    collect(): Promise<CollectionResult> {
      const endTime = millisToHrTime(wallClockMs());
      return Promise.resolve({
        // The reader keeps the SDK producer's resource; this one is not read.
        resourceMetrics: { resource: undefined as never, scopeMetrics: [{ scope: { name: scope }, metrics: histograms.map((h) => h.collect(endTime)) }] },
        errors: [],
      });
    },
  };
}
