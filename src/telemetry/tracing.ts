import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { SpanKind, type Span } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import { AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ConsoleSpanExporter, TraceIdRatioBasedSampler, type SpanExporter } from '@opentelemetry/sdk-trace';
import { createSpanExporter } from './exporters.js';
import { createSpanPreEncoder } from './otlp-encoder.js';
import { ATTR } from '../core/names.js';
import type { TraceSettings } from './otel-env.js';
import { createPropagation, type Propagation } from './propagation.js';
import { createSpanTracer, type Sampling, type SpanTracer } from './span.js';

export interface Tracing extends Propagation {
  /** An OpenTelemetry API Tracer, and gatehouse's own way in (`start`). */
  readonly tracer: SpanTracer;
  /**
   * Sets the CLIENT span's `network.peer.address` to the address of the socket the attempt is
   * sent on, for endpoints named by host name (an IP endpoint's is known at compile time). Call
   * from the undici handler's onConnect with the `abort` it was given: undici publishes the
   * socket for that request right after, on the `undici:client:sendHeaders` channel.
   */
  recordPeer(span: Span, abort: (err?: Error) => void): void;
  shutdown(): Promise<void>;
}

export { SpanKind };

/** What undici publishes on `undici:client:sendHeaders` (its documented diagnostics channel). */
interface SendHeadersMessage {
  readonly request: { readonly abort: unknown };
  readonly socket: Socket;
}

/**
 * Tracing as the settings say (gatehouse's spans, span.ts, with the OTel SDK's samplers, batch
 * processor and OTLP and/or console exporter), or undefined when it is off: then there are no span
 * objects on the request path. Build inside `withOtelEnv`: the OTLP exporter reads its
 * OTEL_EXPORTER_OTLP_* variables.
 */
export function createTracing(settings: TraceSettings | undefined, resource: Resource): Tracing | undefined {
  if (settings === undefined) return undefined;
  const exporters: SpanExporter[] = settings.exporters.map((name) => (name === 'otlp' ? createSpanExporter(settings.otlp, resource) : new ConsoleSpanExporter()));
  const processors = exporters.map((exporter) => new BatchSpanProcessor({ exporter, ...settings.batch }));
  // OTLP protobuf spans are encoded as each ends: an export then copies bytes (otlp-encoder.ts)
  const protobuf = settings.exporters.includes('otlp') && settings.otlp.protocol !== 'http/json';
  const tracer = createSpanTracer(createSampling(settings.sampler), resource, processors, protobuf ? createSpanPreEncoder() : undefined);
  const propagation = createPropagation(settings.propagators);

  // The peer address of host-name endpoints: one span waits between onConnect and undici's
  // synchronous sendHeaders publication for the same request (matched by its abort function).
  let waiting: Span | undefined;
  let waitingAbort: unknown;
  let subscribed = false;
  const onSendHeaders = (message: unknown) => {
    const { request, socket } = message as SendHeadersMessage;
    if (waiting === undefined || request.abort !== waitingAbort) return;
    const address = socket.remoteAddress;
    if (address !== undefined) waiting.setAttribute(ATTR.peerAddress, address);
    waiting = undefined;
    waitingAbort = undefined;
  };

  return {
    tracer,
    extract: propagation.extract,
    inject: propagation.inject,
    traceContext: propagation.traceContext,
    fields: propagation.fields,
    recordPeer(span, abort) {
      if (!subscribed) {
        subscribed = true; // only once an endpoint is named by host name: IP endpoints never publish
        subscribe('undici:client:sendHeaders', onSendHeaders);
      }
      waiting = span;
      waitingAbort = abort;
    },
    shutdown: () => {
      if (subscribed) unsubscribe('undici:client:sendHeaders', onSendHeaders);
      return Promise.all(processors.map((p) => p.shutdown())).then(() => undefined);
    },
  };
}

function createSampling({ name, ratio }: TraceSettings['sampler']): Sampling {
  const parentBased = name.startsWith('parentbased_');
  switch (name) {
    case 'always_on':
    case 'parentbased_always_on':
      return { parentBased, root: new AlwaysOnSampler() };
    case 'always_off':
    case 'parentbased_always_off':
      return { parentBased, root: new AlwaysOffSampler() };
    case 'traceidratio':
    case 'parentbased_traceidratio':
      return { parentBased, root: new TraceIdRatioBasedSampler(ratio) };
  }
}
