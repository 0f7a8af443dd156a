import { ROOT_CONTEXT, trace, type Context, type Span, type TextMapGetter, type TextMapPropagator, type TextMapSetter } from '@opentelemetry/api';
import { CompositePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import type { PropagatorName } from './otel-env.js';

/**
 * How a request's trace context comes in and goes upstream (OTEL_PROPAGATORS). The default,
 * W3C `traceparent`/`tracestate`, reads the two values the pipeline's one pass over the headers
 * already found and appends the client span's to the flat upstream header list: no header
 * object, no second pass. b3 (`b3`, single header) and b3multi (`X-B3-*`) read the raw headers
 * once more, only when configured. `baggage` needs nothing: gatehouse adds no entries, so the
 * client's `baggage` header goes upstream unchanged, as every other end-to-end header.
 */
export interface Propagation {
  /** The parent context of a request's SERVER span (ROOT_CONTEXT when the request carries none). */
  readonly extract: (traceparent: string | undefined, tracestate: string | undefined, rawHeaders: readonly string[]) => Context;
  /** Appends the span's context, in every configured format, to a flat header list. */
  readonly inject: (span: Span, out: string[]) => void;
  /** True when `traceparent`/`tracestate` are written: the client's copies are replaced. */
  readonly traceContext: boolean;
  /** Other header names written (lowercase): the client's copies are stripped at compile time. */
  readonly fields: readonly string[];
}

interface W3CCarrier {
  traceparent: string | undefined;
  tracestate: string | undefined;
}
const w3cGetter: TextMapGetter<W3CCarrier> = {
  keys: () => ['traceparent', 'tracestate'],
  get: (c, key) => (key === 'traceparent' ? c.traceparent : key === 'tracestate' ? c.tracestate : undefined),
};
const recordGetter: TextMapGetter<Record<string, string>> = {
  keys: (c) => Object.keys(c),
  get: (c, key) => c[key],
};
const setter: TextMapSetter<string[]> = { set: (out, key, value) => void out.push(key, value) };

/**
 * `traceparent` (and `tracestate`) of a span, as W3CTraceContextPropagator.inject writes them, from
 * the span's context directly: no Context object per request.
 */
function injectTraceContext(span: Span, out: string[]): void {
  const c = span.spanContext();
  if (!trace.isSpanContextValid(c)) return;
  out.push('traceparent', `00-${c.traceId}-${c.spanId}-0${Number(c.traceFlags || 0).toString(16)}`);
  if (c.traceState !== undefined) out.push('tracestate', c.traceState.serialize());
}

export function createPropagation(names: readonly PropagatorName[]): Propagation {
  const w3c = new W3CTraceContextPropagator();
  const traceContext = names.includes('tracecontext');
  const others = names.filter((n) => n === 'b3' || n === 'b3multi');

  if (others.length === 0) {
    if (!traceContext) return { extract: () => ROOT_CONTEXT, inject: () => {}, traceContext: false, fields: [] };
    return {
      extract: (traceparent, tracestate) => (traceparent === undefined ? ROOT_CONTEXT : w3c.extract(ROOT_CONTEXT, { traceparent, tracestate }, w3cGetter)),
      inject: injectTraceContext,
      traceContext: true,
      fields: [],
    };
  }

  // In the configured order: when a request carries several formats, the last one read wins
  // (the OpenTelemetry composite propagator's rule).
  const propagators: TextMapPropagator[] = [];
  for (const name of names) {
    if (name === 'tracecontext') propagators.push(w3c);
    else if (name === 'b3') propagators.push(new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER }));
    else if (name === 'b3multi') propagators.push(new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }));
  }
  const composite = new CompositePropagator({ propagators });
  // b3 reads both encodings whichever it writes: all B3 names are read, and stripped
  const b3Fields = new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }).fields().concat(new B3Propagator().fields());
  const fields = [...new Set(b3Fields.map((f) => f.toLowerCase()))];
  const read = new Set([...fields, ...(traceContext ? ['traceparent', 'tracestate'] : [])]);
  return {
    extract(_traceparent, _tracestate, rawHeaders) {
      let carrier: Record<string, string> | undefined;
      for (let i = 0; i < rawHeaders.length; i += 2) {
        const name = rawHeaders[i]!.toLowerCase();
        if (read.has(name)) (carrier ??= {})[name] ??= rawHeaders[i + 1]!;
      }
      return carrier === undefined ? ROOT_CONTEXT : composite.extract(ROOT_CONTEXT, carrier, recordGetter);
    },
    inject: (span, out) => composite.inject(trace.setSpan(ROOT_CONTEXT, span), out, setter),
    traceContext,
    fields,
  };
}
