import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { endClientSpan, startClientSpan } from '../telemetry/http-spans.js';
import { requestFields } from '../telemetry/log.js';
import { recordClient, type Metrics } from '../telemetry/metrics.js';
import type { Tracing } from '../telemetry/tracing.js';
import { GatehouseError } from './errors.js';
import { errorOutcome, statusOutcome } from '../resilience/outcome.js';
import type { AttemptControl, Exchange } from './exchange.js';
import { buildResponseHeaders, type ResponseHeaderPlan } from './headers.js';
import { tlsReason, UpstreamError, type AttemptResult, type FailureKind, type Send } from './send.js';
import type { Endpoint, UpstreamRuntime } from './upstreams.js';

export interface AttemptDeps {
  readonly tracing: Tracing | undefined;
  readonly metrics: Metrics;
  /** True while the server drains: answers then carry `Connection: close`. */
  readonly isDraining: () => boolean;
  /** TLS failures are logged (with their reason) as well as counted and traced. */
  readonly logger?: Logger;
}

/**
 * The innermost Send: one try against one endpoint. The response streams straight from undici
 * into the client's ServerResponse with backpressure (no intermediate stream, no pipeline()),
 * unless `ex.retryable` claims it for another try, in which case nothing reaches the client.
 */
export function createAttempt(
  upstream: UpstreamRuntime,
  responsePlan: ResponseHeaderPlan,
  /** `rewrite.host`: undefined = the endpoint's authority, 'preserve' = the client's Host. */
  host: string | undefined,
  deps: AttemptDeps,
): Send {
  return function attempt(ex: Exchange): Promise<AttemptResult> {
    return new Promise<AttemptResult>((resolve, reject) => {
      if (ex.cancelled) {
        reject(new UpstreamError(ex.cancelled, 'request cancelled'));
        return;
      }
      const ep = upstream.pick();
      if (ep === undefined) {
        reject(new GatehouseError('no_healthy_upstream', `no endpoint of upstream '${upstream.name}' is healthy`));
        return;
      }
      ex.attempts++;
      const headers = ex.outHeaders;
      headers.length = ex.outHeaderBase;
      headers.push('host', host === undefined ? ep.authority : host === 'preserve' ? ex.hostHeader || ep.authority : host);
      const path = ep.basePath + ex.target;
      let span: Span | undefined;
      if (deps.tracing !== undefined) {
        span = startClientSpan(deps.tracing, ex, ep, path);
        deps.tracing.inject(span, headers);
      }
      const body = ex.body;
      const handler = new AttemptHandler(ex, ep, upstream, responsePlan, deps, span, resolve, reject);
      ep.inFlight++;
      upstream.inFlight++;
      if (handler.isRetry) upstream.retryAttemptsInFlight++;
      ex.attempt = handler;
      ep.pool.dispatch({ path, method: ex.method, headers, body, blocking: false }, handler);
    });
  };
}

/**
 * undici's handler protocol (onConnect/onHeaders/onData/onComplete/onError): the lowest-overhead
 * way to consume a response. A class, since one is made per attempt and a stable shape is faster.
 */
class AttemptHandler implements Dispatcher.DispatchHandler, AttemptControl {
  private statusCode = 0;
  /** undici's abort, once the request has a connection. */
  private abortRequest: ((err?: Error) => void) | undefined = undefined;
  /** Set when the attempt was ended while still waiting for a connection. */
  private abandoned: Error | undefined = undefined;
  private rawHeaders: Buffer[] = [];
  private committed = false;
  private discard = false;
  private done = false;
  private resume: () => void = noop;
  private readonly startMs = performance.now();
  /** A second or later try: counted apart for the retry budget. */
  readonly isRetry: boolean;

  constructor(
    private readonly ex: Exchange,
    private readonly ep: Endpoint,
    private readonly upstream: UpstreamRuntime,
    private readonly plan: ResponseHeaderPlan,
    private readonly deps: AttemptDeps,
    private readonly span: Span | undefined,
    private readonly resolve: (r: AttemptResult) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    this.isRetry = ex.attempts > 1;
  }

  abort(reason: Error): void {
    if (this.done) return;
    if (this.abortRequest !== undefined) {
      this.abortRequest(reason); // undici answers with onError
      return;
    }
    // Still queued for a connection (connecting, or the pool is busy): answer now rather than
    // when a socket frees up; the queued request is dropped in onConnect.
    this.abandoned = reason;
    this.onError(reason);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.abandoned !== undefined) {
      abort(this.abandoned);
      return;
    }
    const ex = this.ex;
    if (ex.cancelled) {
      abort(new UpstreamError(ex.cancelled, 'request cancelled'));
      return;
    }
    this.abortRequest = abort;
    // a host-name endpoint: the span learns the IP undici connected to
    if (this.span !== undefined && this.ep.peerAddress === undefined) this.deps.tracing!.recordPeer(this.span, abort);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx: informational, not forwarded
    const ex = this.ex;
    this.statusCode = statusCode;
    this.rawHeaders = rawHeaders;
    if (ex.retryable !== undefined && ex.retryable(ex, statusCode, rawHeaders)) {
      this.discard = true; // drained so the connection stays reusable; nothing reaches the client
      return true;
    }
    const res = ex.res;
    if (ex.deadlineTimer !== undefined) {
      clearTimeout(ex.deadlineTimer);
      ex.deadlineTimer = undefined;
    }
    if (res.destroyed) return true;
    this.committed = true;
    ex.status = statusCode;
    res.writeHead(statusCode, buildResponseHeaders(ex, this.plan, rawHeaders, this.deps.isDraining()));
    this.resume = resume;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.discard) return true;
    const res = this.ex.res;
    if (res.write(chunk)) return true;
    // Backpressure: undici stops reading until resume(). Listening only now spares most
    // responses (one write) a listener.
    res.once('drain', this.resume);
    return false;
  }

  onComplete(): void {
    if (this.committed) this.ex.res.end();
    this.settle(undefined);
    this.resolve({ statusCode: this.statusCode, rawHeaders: this.rawHeaders, committed: this.committed });
  }

  onError(err: Error): void {
    if (this.done) return; // an abandoned attempt's queued request, dropped later
    const failure = toUpstreamError(err, this.ex);
    this.settle(failure);
    if (this.committed) {
      // The client already has a status line: cut the connection so it cannot mistake a
      // truncated body for a whole one (never a fake 200). Unless the client itself left, the
      // failure is the upstream's: the access log, metrics and span say so.
      const ex = this.ex;
      if (!(failure instanceof UpstreamError && failure.kind === 'aborted')) {
        ex.errorCode = failure instanceof UpstreamError ? (failure.kind === 'timeout' ? 'upstream_timeout' : 'bad_gateway') : (failure as GatehouseError).code;
        ex.note = `upstream ${failure instanceof UpstreamError ? failure.kind : 'error'} after response headers: ${failure.message}`;
      }
      ex.res.destroy();
      this.resolve({ statusCode: this.statusCode, rawHeaders: this.rawHeaders, committed: true });
      return;
    }
    this.reject(failure);
  }

  /** A certificate that fails verification: the reason goes to the log and the client span. */
  private reportTls(failure: UpstreamError): void {
    const reason = tlsReason(failure);
    this.span?.addEvent('gatehouse.tls.failure', { reason, message: failure.message });
    this.deps.logger?.warn({ ...requestFields(this.ex), upstream: this.upstream.name, endpoint: this.ep.url, reason, message: failure.message }, 'TLS with the upstream failed');
  }

  private settle(failure: Error | undefined): void {
    if (this.done) return;
    this.done = true;
    const ex = this.ex;
    if (ex.attempt === this) ex.attempt = undefined;
    this.ep.inFlight--;
    this.upstream.inFlight--;
    if (this.isRetry) this.upstream.retryAttemptsInFlight--;
    this.upstream.report(this.ep, failure === undefined ? statusOutcome(this.statusCode) : errorOutcome(failure), ex);
    const errorType = failure === undefined ? undefined : failure instanceof UpstreamError ? failure.kind : (failure as GatehouseError).code;
    recordClient(this.deps.metrics, (performance.now() - this.startMs) / 1000, this.upstream.name, ex.route?.name, this.ep, ex.method, this.statusCode, errorType);
    if (errorType === 'tls') this.reportTls(failure as UpstreamError);
    if (this.span !== undefined) endClientSpan(this.span, this.statusCode, errorType);
  }
}

const noop = () => {};

/** undici's and Node's error codes -> what went wrong, by code and never by message text. */
export function classifyFailure(err: unknown): FailureKind {
  const code = (err as { code?: unknown } | null)?.code;
  // llhttp errors without a mapped code still carry the class name
  if ((err as Error | null)?.name === 'HTTPParserError') return 'invalid-response';
  if (typeof code !== 'string') return 'reset';
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
      return 'connect-failure';
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
      return 'timeout';
    case 'UND_ERR_ABORTED':
      return 'aborted';
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    default:
      if (code.startsWith('HPE_') || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_INFO') return 'invalid-response';
      if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT') || code.startsWith('UNABLE_TO_')) return 'tls';
      return 'reset';
  }
}

function toUpstreamError(err: Error, ex: Exchange): Error {
  if (err instanceof UpstreamError || err instanceof GatehouseError) return err;
  if (ex.cancelled) return new UpstreamError(ex.cancelled, err.message, { cause: err });
  return new UpstreamError(classifyFailure(err), err.message, { cause: err });
}
