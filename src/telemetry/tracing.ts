import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { SpanKind, type Span, type Tracer } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import { createSpanExporter } from './exporters.js';
import { ATTR } from '../core/names.js';
import type { TraceSettings } from './otel-env.js';
import { createPropagation, type Propagation } from './propagation.js';

export interface Tracing extends Propagation {
  readonly tracer: Tracer;
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
 * Tracing as the settings say (OTel SDK: TracerProvider, batch processor, OTLP and/or console
 * exporter), or undefined when it is off: then there are no span objects on the request path.
 * Build inside `withOtelEnv`: the OTLP exporter reads its OTEL_EXPORTER_OTLP_* variables.
 */
export function createTracing(settings: TraceSettings | undefined, resource: Resource): Tracing | undefined {
  if (settings === undefined) return undefined;
  const exporters: SpanExporter[] = settings.exporters.map((name) => (name === 'otlp' ? createSpanExporter(settings.otlp) : new ConsoleSpanExporter()));
  const provider = new TracerProvider({
    resource,
    sampler: createSampler(settings.sampler),
    spanProcessors: exporters.map((exporter) => new BatchSpanProcessor({ exporter, ...settings.batch })),
  });
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
    tracer: provider.getTracer('gatehouse'),
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
      return provider.shutdown();
    },
  };
}

function createSampler({ name, ratio }: TraceSettings['sampler']): Sampler {
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}
