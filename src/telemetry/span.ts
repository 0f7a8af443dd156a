import { randomFillSync } from 'node:crypto';
import {
  context as apiContext,
  diag,
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  SamplingDecision,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type AttributeValue,
  type Context,
  type Exception,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  type TimeInput,
  type Tracer,
} from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, Sampler, SpanProcessor, TimedEvent } from '@opentelemetry/sdk-trace';
import { epochNanos } from './span-time.js';

/**
 * gatehouse's spans: an OpenTelemetry API `Span` (so `trace.setSpan`, propagators and any other
 * instrumentation in the process treat it as any SDK span, parent of theirs) that records into a
 * compact object: times as `performance.now()` numbers, the attributes object it was started with
 * kept as it is (its undefined values are skipped when it is encoded), no span limits but the
 * SDK's default counts. It is also the SDK's `ReadableSpan`, computed on demand, so the SDK's batch
 * processor, its JSON and console exporters take it unchanged; the OTLP protobuf encoder
 * (otlp-encoder.ts) reads its fields directly. docs/performance.md measures what it saves.
 */

/** The SDK's default span limits (OTEL_SPAN_*_COUNT_LIMIT, which gatehouse does not read). */
const ATTRIBUTE_LIMIT = 128;
const EVENT_LIMIT = 128;
const LINK_LIMIT = 128;

export interface RecordedEvent {
  readonly name: string;
  readonly ms: number;
  readonly attributes: Attributes | undefined;
}

const NO_LINKS: Link[] = [];
const NO_EVENTS: RecordedEvent[] = [];
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET };
const SCOPE = { name: 'gatehouse' };

/** What the tracer shares with its spans. */
interface Sink {
  readonly resource: Resource;
  readonly processors: readonly SpanProcessor[];
  /** Called when a span ends, before the processors see it (the OTLP protobuf pre-encoder). */
  readonly onEnd: ((span: RecordedSpan) => void) | undefined;
}

export class RecordedSpan implements Span, ReadableSpan {
  endMs = -1;
  status: SpanStatus = UNSET;
  recordedEvents: RecordedEvent[] = NO_EVENTS;
  links: Link[];
  droppedAttributesCount = 0;
  droppedEventsCount = 0;
  droppedLinksCount = 0;
  /** The span's OTLP protobuf, written when it ended (otlp-encoder.ts), when the exporter wants it. */
  encoded: Uint8Array | undefined = undefined;
  private count = -1; // attributes, counted when one is added after the start

  constructor(
    public name: string,
    readonly kind: SpanKind,
    private readonly context: SpanContext,
    readonly parentSpanContext: SpanContext | undefined,
    /** The span's attributes; values may be undefined (not attributes). Owned by the span. */
    readonly ownAttributes: Attributes,
    links: Link[] | undefined,
    readonly startMs: number,
    private readonly sink: Sink,
  ) {
    this.links = links === undefined || links.length === 0 ? NO_LINKS : links.slice(0, LINK_LIMIT);
  }

  spanContext(): SpanContext {
    return this.context;
  }

  setAttribute(key: string, value: AttributeValue): this {
    if (value == null || this.endMs >= 0 || key.length === 0) return this;
    const attrs = this.ownAttributes;
    if (attrs[key] === undefined) {
      if (this.count < 0) this.count = countDefined(attrs);
      if (this.count >= ATTRIBUTE_LIMIT) {
        this.droppedAttributesCount++;
        return this;
      }
      this.count++;
    }
    attrs[key] = value;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) this.setAttribute(key, attributes[key]!);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.endMs >= 0) return this;
    let attributes: Attributes | undefined;
    if (isTimeInput(attributesOrTime)) time = attributesOrTime;
    else attributes = attributesOrTime;
    if (this.recordedEvents === NO_EVENTS) this.recordedEvents = [];
    else if (this.recordedEvents.length >= EVENT_LIMIT) {
      this.recordedEvents.shift();
      this.droppedEventsCount++;
    }
    this.recordedEvents.push({ name, ms: time === undefined ? performance.now() : msOf(time), attributes });
    return this;
  }

  addLink(link: Link): this {
    if (this.endMs >= 0) return this;
    if (this.links === NO_LINKS) this.links = [];
    else if (this.links.length >= LINK_LIMIT) {
      this.links.shift();
      this.droppedLinksCount++;
    }
    this.links.push(link);
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (this.endMs >= 0 || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this;
    this.status = status.code === SpanStatusCode.ERROR && typeof status.message === 'string' ? { code: status.code, message: status.message } : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (this.endMs < 0) this.name = name;
    return this;
  }

  end(endTime?: TimeInput): void {
    if (this.endMs >= 0) {
      diag.error(`${this.name} ${this.context.traceId}-${this.context.spanId} - You can only call end() on a span once.`);
      return;
    }
    const end = endTime === undefined ? performance.now() : msOf(endTime);
    this.endMs = end < this.startMs ? this.startMs : end;
    this.sink.onEnd?.(this);
    for (const p of this.sink.processors) p.onEnd(this);
  }

  isRecording(): boolean {
    return this.endMs < 0;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === 'string') attributes['exception.message'] = exception;
    else if (exception) {
      if (exception.code) attributes['exception.type'] = exception.code.toString();
      else if (exception.name) attributes['exception.type'] = exception.name;
      if (exception.message) attributes['exception.message'] = exception.message;
      if (exception.stack) attributes['exception.stacktrace'] = exception.stack;
    }
    if (attributes['exception.type'] !== undefined || attributes['exception.message'] !== undefined) this.addEvent('exception', attributes, time);
  }

  // ReadableSpan, for the SDK's batch processor and its JSON and console exporters

  get attributes(): Attributes {
    const out: Attributes = {};
    for (const key in this.ownAttributes) {
      const v = this.ownAttributes[key];
      if (v !== undefined && v !== null) out[key] = v;
    }
    return out;
  }
  get events(): TimedEvent[] {
    return this.recordedEvents.map((e) => ({ name: e.name, time: hrTime(e.ms), attributes: e.attributes, droppedAttributesCount: 0 }));
  }
  get startTime(): HrTime {
    return hrTime(this.startMs);
  }
  get endTime(): HrTime {
    return hrTime(Math.max(this.endMs, this.startMs));
  }
  get duration(): HrTime {
    const ns = Math.round((Math.max(this.endMs, this.startMs) - this.startMs) * 1e6);
    return [Math.floor(ns / 1e9), ns % 1e9];
  }
  get ended(): boolean {
    return this.endMs >= 0;
  }
  get resource(): Resource {
    return this.sink.resource;
  }
  get instrumentationScope(): { name: string } {
    return SCOPE;
  }
}

function countDefined(attrs: Attributes): number {
  let n = 0;
  for (const key in attrs) if (attrs[key] !== undefined && attrs[key] !== null) n++;
  return n;
}

function hrTime(ms: number): HrTime {
  const ns = epochNanos(ms);
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}

function isTimeInput(v: unknown): v is TimeInput {
  return typeof v === 'number' || v instanceof Date || (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number');
}

/** A TimeInput as milliseconds from performance.timeOrigin (the SDK's reading of the same inputs). */
function msOf(t: TimeInput): number {
  if (typeof t === 'number') return t < performance.timeOrigin ? t : t - performance.timeOrigin; // a performance.now() or an epoch time
  if (t instanceof Date) return t.getTime() - performance.timeOrigin;
  return t[0] * 1000 + t[1] / 1e6 - performance.timeOrigin;
}

// ------------------------------------------------------------------ ids

/** Random ids from a pool filled by the CSPRNG a few KiB at a time. */
const pool = Buffer.allocUnsafe(8192);
let poolAt = pool.length;
function randomHex(bytes: number, invalid: string): string {
  for (;;) {
    if (poolAt + bytes > pool.length) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const hex = pool.toString('hex', poolAt, poolAt + bytes);
    poolAt += bytes;
    if (hex !== invalid) return hex;
  }
}
const INVALID_TRACE = INVALID_SPAN_CONTEXT.traceId;
const INVALID_SPAN = INVALID_SPAN_CONTEXT.spanId;
export const newTraceId = () => randomHex(16, INVALID_TRACE);
export const newSpanId = () => randomHex(8, INVALID_SPAN);

// ------------------------------------------------------------------ tracer

export interface SpanTracer extends Tracer {
  /**
   * gatehouse's own path: a span whose parent is `parent` (a span, a remote context, or none for a
   * root), taking ownership of `attributes`. The same sampling and records as `startSpan`.
   */
  start(name: string, kind: SpanKind, attributes: Attributes, parent: SpanContext | undefined, links?: Link[]): Span;
}

/**
 * How spans are sampled (OTEL_TRACES_SAMPLER): a parent-based sampler follows the parent's sampled
 * flag (the SDK ParentBasedSampler's defaults, remote and local parents alike) and asks `root` for
 * a new trace; otherwise `root` decides every span. `root` is the SDK's sampler, given the root
 * context: always_on, always_off and traceidratio read none.
 */
export interface Sampling {
  readonly parentBased: boolean;
  readonly root: Sampler;
}

/** The OpenTelemetry API `Tracer` of gatehouse's spans: the SDK's samplers, the SDK's span processors. */
export function createSpanTracer(
  sampling: Sampling,
  resource: Resource,
  processors: readonly SpanProcessor[],
  onEnd?: (span: RecordedSpan) => void,
): SpanTracer {
  const sink: Sink = { resource, processors, onEnd };
  const { parentBased, root } = sampling;

  function start(name: string, kind: SpanKind, attributes: Attributes, parent: SpanContext | undefined, links: Link[] | undefined, startMs: number): Span {
    const valid = parent !== undefined && trace.isSpanContextValid(parent) ? parent : undefined;
    const traceId = valid === undefined ? newTraceId() : valid.traceId;
    const spanId = newSpanId();
    let decision: SamplingDecision;
    let traceState = valid?.traceState;
    if (parentBased && valid !== undefined) {
      decision = (valid.traceFlags & TraceFlags.SAMPLED) !== 0 ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD;
    } else {
      const result = root.shouldSample(ROOT_CONTEXT, traceId, name, kind, attributes, links ?? NO_LINKS);
      decision = result.decision;
      traceState = result.traceState ?? traceState;
      if (result.attributes !== undefined) Object.assign(attributes, result.attributes);
    }
    const spanContext: SpanContext = { traceId, spanId, traceFlags: decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE, traceState };
    if (decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(spanContext);
    return new RecordedSpan(name, kind, spanContext, valid, attributes, links, startMs, sink);
  }

  return {
    start: (name, kind, attributes, parent, links) => start(name, kind, attributes, parent, links, performance.now()),

    startSpan(name: string, options: SpanOptions = {}, ctx: Context = apiContext.active()): Span {
      if (isTracingSuppressed(ctx)) return trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
      const parent = options.root ? undefined : trace.getSpanContext(ctx);
      const startMs = options.startTime === undefined ? performance.now() : msOf(options.startTime);
      const attributes: Attributes = { ...options.attributes };
      const links = options.links?.map((l) => ({ context: l.context, attributes: l.attributes === undefined ? undefined : { ...l.attributes } }));
      return start(name, options.kind ?? SpanKind.INTERNAL, attributes, parent, links, startMs);
    },

    startActiveSpan<F extends (span: Span) => unknown>(name: string, ...args: unknown[]): ReturnType<F> {
      const fn = args[args.length - 1] as F;
      const options = (args.length >= 2 ? args[0] : undefined) as SpanOptions | undefined;
      const ctx = (args.length >= 3 ? args[1] : undefined) as Context | undefined;
      const parentContext = ctx ?? apiContext.active();
      const span = this.startSpan(name, options, parentContext);
      return apiContext.with(trace.setSpan(parentContext, span), fn as (s: Span) => ReturnType<F>, undefined, span);
    },
  };
}
