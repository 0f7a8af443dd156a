import type { Logger } from 'pino';
import { GatehouseError, tlsReason, UpstreamError } from '../core/errors.js';
import type { Exchange } from '../core/exchange.js';
import { sendProblem } from '../core/problem.js';
import type { AccessLog } from '../telemetry/access-log.js';
import { endServerSpan } from '../telemetry/http-spans.js';
import { recordServer, type Metrics } from '../telemetry/metrics.js';
import type { Tracing } from '../telemetry/tracing.js';
import type { Plan } from './plan.js';

/*
 * The end of a request's lifecycle, whoever ends it: gatehouse's own answer (problem+json, or a
 * cut connection once the upstream's headers went out), then, once the response is over and the
 * policies settled, the metric, the span and the access-log line.
 */

/** What every listener shares: the current plan (swapped by reload) and the drain state. */
export interface ProxyState {
  plan: Plan;
  draining: boolean;
  inFlight: number;
  /** Called when inFlight drops to 0 while draining. */
  onIdle: (() => void) | undefined;
}

export interface PipelineDeps {
  readonly tracing: Tracing | undefined;
  readonly metrics: Metrics;
  readonly accessLog: AccessLog;
  readonly logger: Logger;
}

/** Turns any failure into the client's answer: problem+json, or a cut connection once headers went out. */
export function respondError(ex: Exchange, err: unknown, state: ProxyState, bodyUnread: boolean): void {
  if (ex.res.writableEnded) return; // answered already (a body timeout, say): nothing more to say
  const error = toGatehouseError(err, ex);
  if (error === undefined) return; // the client is gone: nobody to answer
  ex.errorCode = error.code;
  if (ex.res.headersSent || ex.res.destroyed) {
    ex.res.destroy();
    return;
  }
  ex.status = error.status;
  if (ex.upgrade !== undefined) {
    const socket = ex.upgrade.socket;
    ex.res.once('finish', () => socket.end());
  }
  sendProblem(ex.res, error, {
    route: ex.route?.name,
    traceId: ex.traceId,
    requestId: ex.requestId,
    extraHeaders: ex.responseHeaders,
    // An unread request body would have to be drained before the connection could be reused.
    closing: state.draining || bodyUnread,
  });
}

function toGatehouseError(err: unknown, ex: Exchange): GatehouseError | undefined {
  if (err instanceof GatehouseError) return err;
  const upstream = ex.route?.upstream ?? '?';
  if (err instanceof UpstreamError) {
    switch (err.kind) {
      case 'aborted':
        return undefined;
      case 'timeout':
        return new GatehouseError('upstream_timeout', err.message);
      case 'connect-failure':
        return new GatehouseError('bad_gateway', `could not connect to upstream '${upstream}'`);
      case 'reset':
        return new GatehouseError('bad_gateway', `upstream '${upstream}' closed the connection before answering`);
      case 'invalid-response':
        return new GatehouseError('bad_gateway', `upstream '${upstream}' sent an invalid HTTP response`);
      case 'tls':
        return new GatehouseError('bad_gateway', `TLS handshake with upstream '${upstream}' failed (${tlsReason(err)})`);
    }
  }
  if ((err as { code?: unknown } | null)?.code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' || ex.cancelled === 'aborted') return undefined;
  ex.note = `internal error: ${(err as Error)?.message ?? String(err)}`;
  return new GatehouseError('bad_gateway', `upstream '${upstream}' could not be reached`);
}

/**
 * The response is over (sent, or the client is gone). The span and the log line wait for the
 * policies to settle too, so what they record about this request (a breaker transition on its
 * last answer, the final attempt count) is part of it.
 */
export function closed(ex: Exchange, state: ProxyState, deps: PipelineDeps): void {
  if (!ex.res.writableFinished && ex.upgrade === undefined) ex.cancel('aborted', new UpstreamError('aborted', 'the client closed the connection'));
  if (ex.deadlineTimer !== undefined) {
    clearTimeout(ex.deadlineTimer);
    ex.deadlineTimer = undefined;
  }
  const durationMs = performance.now() - ex.startMs;
  if (ex.sending === undefined) finish(ex, state, deps, durationMs);
  else {
    const done = () => finish(ex, state, deps, durationMs);
    ex.sending.then(done, done);
  }
}

function finish(ex: Exchange, state: ProxyState, deps: PipelineDeps, durationMs: number): void {
  const res = ex.res;
  // 499: the client went away before an answer (nginx's convention)
  const status = ex.status !== 0 ? ex.status : res.headersSent ? res.statusCode : 499;
  const routeName = ex.route?.name;
  recordServer(deps.metrics, durationMs / 1000, ex.route, ex.method, status, ex.errorCode);
  endServerSpan(ex, status);
  deps.accessLog({
    route: routeName ?? null,
    method: ex.method,
    path: ex.path,
    status,
    durationMs: Math.round(durationMs * 1000) / 1000,
    upstream: ex.route?.upstream ?? null,
    attempts: ex.attempts,
    retrySkipped: ex.retrySkipped ?? null,
    traceId: ex.traceId || null,
    requestId: ex.requestId,
    error: ex.errorCode ?? null,
    client: ex.clientIp,
  });
  state.inFlight--;
  if (state.inFlight === 0 && state.onIdle !== undefined) state.onIdle();
}
