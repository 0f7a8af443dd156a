import { randomUUID } from 'node:crypto';
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import { Transform, type Duplex, type TransformCallback } from 'node:stream';
import { normalizePath } from '../routing/normalize.js';
import type { AccessLog } from '../telemetry/access-log.js';
import { endServerSpan, setServerRoute, startServerSpan } from '../telemetry/http-spans.js';
import { createRouteLog } from '../telemetry/log.js';
import { recordServer, type Metrics } from '../telemetry/metrics.js';
import type { Tracing } from '../telemetry/tracing.js';
import { GatehouseError } from './errors.js';
import { Exchange } from './exchange.js';
import { acceptRequestId, buildUpstreamHeaders, clientAddress, isTrusted, scanRequestHeaders, type RequestFacts } from './headers.js';
import { createBodyWatch, readSmallBody, type BodyWatch } from './body.js';
import type { ListenerPlan, Plan, RoutePlan } from './plan.js';
import { sendProblem } from './problem.js';
import { tlsReason, UpstreamError } from './send.js';
import type { WebSocketProxy } from './websocket.js';

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
  readonly webSockets: WebSocketProxy;
  readonly logger: Logger;
}

/** The request's Exchange, kept on the object whose 'close' ends it (the response, or an upgraded socket). */
const EXCHANGE = Symbol('gatehouse.exchange');
type Closable = (ServerResponse | Duplex) & { [EXCHANGE]?: Exchange | undefined };

const BUSY = Symbol('gatehouse.busy');
const WAITING = Symbol('gatehouse.waiting');
/** A client connection: whether a request of it is being answered, and the pipelined ones behind it. */
type Connection = Socket & {
  [BUSY]?: boolean;
  [WAITING]?: { readonly req: IncomingMessage; readonly res: ServerResponse; readonly expectContinue: boolean }[] | undefined;
};

/** An HTTP/1.1 Upgrade request: the raw socket takes the place of a ServerResponse. */
interface Upgrade {
  readonly socket: Duplex;
  readonly head: Buffer;
}

/**
 * The request lifecycle (fastify's idea: a fixed order, any stage may answer):
 * read plan -> scan headers -> normalise path -> match route -> stages -> forward -> log/trace.
 */
export function createRequestHandler(state: ProxyState, listenerName: string, deps: PipelineDeps) {
  const routeLog = createRouteLog(deps.logger); // undefined unless the log level is debug
  const handleRequest = (req: IncomingMessage, res: ServerResponse) => arrive(req, res, false);
  /** `Expect: 100-continue` (node:http's 'checkContinue'): `100` goes out only once the route's checks pass. */
  const handleContinue = (req: IncomingMessage, res: ServerResponse) => arrive(req, res, true);
  const bodyWatch = createBodyWatch((ex, timeoutMs) => bodyTimedOut(ex, timeoutMs, state));

  function onClose(this: Closable): void {
    const ex = this[EXCHANGE];
    if (ex === undefined) return;
    this[EXCHANGE] = undefined;
    bodyWatch.unwatch(ex);
    closed(ex, state, deps);
    if (ex.upgrade === undefined && ex.connection !== null) next(ex.connection, ex.res);
  }

  /**
   * One request at a time per connection (as nginx does with pipelining): node:http parses a
   * pipelined request while the one before it is still being answered, and a request behind an
   * answer that closes the connection must never reach an upstream (RFC 9112 §9.6) — its
   * client will never see the answer.
   */
  function arrive(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const socket: Connection = req.socket;
    if (socket[BUSY] === true) {
      (socket[WAITING] ??= []).push({ req, res, expectContinue });
      return;
    }
    socket[BUSY] = true;
    handle(req, res, undefined, expectContinue);
  }

  function next(socket: Connection, res: ServerResponse): void {
    socket[BUSY] = false;
    const waiting = socket[WAITING];
    if (waiting === undefined || waiting.length === 0) return;
    // `_last`: node:http's own mark of an answer that ends the connection (a `Connection: close`
    // header, HTTP/1.0), the same flag it closes the socket by once the answer is written
    if ((res as ServerResponse & { _last?: boolean })._last === true || socket.destroyed) {
      // the answer closed the connection: what was pipelined behind it is dropped unseen
      socket[WAITING] = undefined;
      return;
    }
    const { req, res: nextRes, expectContinue } = waiting.shift()!;
    arrive(req, nextRes, expectContinue);
  }

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A ServerResponse on the raw socket lets refusals use the same problem+json writer.
    const res = new ServerResponse(req);
    res.assignSocket(socket as Socket);
    res.shouldKeepAlive = false;
    socket.on('error', () => socket.destroy());
    handle(req, res, { socket, head }, false);
  };

  function handle(req: IncomingMessage, res: ServerResponse, upgrade: Upgrade | undefined, expectContinue: boolean): void {
    const plan = state.plan; // read once: this request keeps this plan to the end
    const listener = plan.listeners.get(listenerName);
    const ex = new Exchange(req, res, performance.now());
    ex.upgrade = upgrade;
    ex.expectContinue = expectContinue;
    ex.connection = req.socket;
    state.inFlight++;
    const closer = (upgrade?.socket ?? res) as Closable;
    closer[EXCHANGE] = ex;
    closer.on('close', onClose); // one shared listener, no closure per request
    if (listener === undefined) {
      // The listener was removed by a reload while this connection was open.
      respondError(ex, new GatehouseError('no_route', 'this listener is no longer configured'), state, true);
      return;
    }

    const facts = scanRequestHeaders(req.rawHeaders);
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47 /* / */) {
      // absolute-form (`GET http://host/path`, as clients send to a proxy): RFC 9112 §3.2.2 says
      // accept it, and its authority replaces the Host header.
      const absolute = splitAbsoluteForm(url);
      if (absolute !== undefined) {
        url = absolute.pathAndQuery;
        facts.host = absolute.authority;
      }
    }
    ex.requestId = acceptRequestId(facts.requestId) ? facts.requestId : randomUUID();
    ex.facts = facts;
    ex.hostHeader = facts.host ?? '';
    const host = facts.host === undefined ? '' : hostName(facts.host);
    const peer = req.socket.remoteAddress ?? '';
    if (listener.trusted !== undefined && isTrusted(listener.trusted, peer)) {
      ex.forwardedFor = facts.forwardedFor;
      ex.forwardedProto = facts.forwardedProto;
      ex.forwardedHost = facts.forwardedHost;
    }
    ex.clientIp = clientAddress(peer, facts.forwardedFor, listener.trusted);
    if (req.rawHeaders.length > listener.maxHeaders * 2) {
      respondError(ex, new GatehouseError('headers_too_large', `the request has more than ${listener.maxHeaders} header fields (limits.maxHeaders)`), state, true);
      return;
    }
    const refusal = refuseFraming(facts, host, req.httpVersionMinor);
    if (refusal !== undefined) {
      respondError(ex, refusal, state, true);
      return;
    }
    ex.host = host ?? '';

    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    ex.query = q < 0 ? '' : url.slice(q);
    // `#` anywhere (the query too): a fragment is not part of a request target (RFC 9112 §3.2)
    const path = q >= 0 && ex.query.includes('#') ? undefined : normalizePath(rawPath);
    ex.path = path ?? rawPath;
    if (deps.tracing !== undefined) {
      startServerSpan(deps.tracing, ex, facts.traceparent, facts.tracestate, listener.scheme);
    } else if (facts.traceparent !== undefined) {
      ex.traceId = traceIdOf(facts.traceparent);
    }

    if (path === undefined) {
      respondError(
        ex,
        new GatehouseError('bad_request', 'the request target is not a valid path (a fragment, a backslash, an escaped control character or a malformed escape)'),
        state,
        hasBody(facts),
      );
      return;
    }

    const route = matchRoute(listener, ex, req.rawHeaders);
    if (route === undefined) {
      respondError(ex, new GatehouseError('no_route', `no route of listener '${listener.name}' matches ${ex.method} ${path}`), state, hasBody(facts));
      return;
    }
    ex.route = route.info;
    setServerRoute(ex);
    routeLog?.(ex);

    const bodyPresent = hasBody(facts);
    if (route.maxBodyBytes !== undefined && bodyPresent) {
      const length = facts.contentLength === undefined ? undefined : Number(facts.contentLength);
      if (length !== undefined && length > route.maxBodyBytes) {
        respondError(ex, tooLarge(route.maxBodyBytes), state, true);
        return;
      }
      ex.body = length === undefined ? limitBody(req, route.maxBodyBytes) : req;
    } else {
      ex.body = bodyPresent ? req : null;
    }

    if (upgrade !== undefined && !route.websocket) {
      respondError(ex, new GatehouseError('no_route', `route '${route.info.name}' does not accept WebSocket upgrades (websocket: true)`), state, false);
      return;
    }

    ex.peer = peer;
    ex.listener = listener;
    if (route.stages.length === 0) {
      forward(ex, route, state, deps, bodyWatch);
    } else {
      runStages(ex, route, 0, state, deps, bodyWatch);
    }
  }

  return { handleRequest, handleContinue, handleUpgrade };
}

function matchRoute(listener: ListenerPlan, ex: Exchange, rawHeaders: string[]): RoutePlan | undefined {
  const input = { method: ex.method, host: ex.host, path: ex.path, rawHeaders };
  const routes = listener.routes;
  for (let i = 0; i < routes.length; i++) {
    if (routes[i]!.match(input)) return routes[i];
  }
  return undefined;
}

/** Runs stages in order; synchronous ones stay synchronous (no promise per stage). */
function runStages(ex: Exchange, route: RoutePlan, from: number, state: ProxyState, deps: PipelineDeps, bodyWatch: BodyWatch): void {
  for (let i = from; i < route.stages.length; i++) {
    let outcome: ReturnType<RoutePlan['stages'][number]>;
    try {
      outcome = route.stages[i]!(ex);
    } catch (err) {
      respondError(ex, err, state, ex.body !== null);
      return;
    }
    if (outcome instanceof Promise) {
      outcome.then(
        (refusal) => {
          if (refusal !== undefined) respondError(ex, refusal, state, ex.body !== null);
          else if (!ex.cancelled) runStages(ex, route, i + 1, state, deps, bodyWatch);
        },
        (err: unknown) => respondError(ex, err, state, ex.body !== null),
      );
      return;
    }
    if (outcome !== undefined) {
      respondError(ex, outcome, state, ex.body !== null);
      return;
    }
  }
  forward(ex, route, state, deps, bodyWatch);
}

/** Every check passed: the body may come (`100 Continue`), and the request goes on. */
function forward(ex: Exchange, route: RoutePlan, state: ProxyState, deps: PipelineDeps, bodyWatch: BodyWatch): void {
  if (ex.expectContinue) {
    ex.expectContinue = false;
    ex.res.writeContinue();
  }
  const listener = ex.listener!;
  if (ex.body !== null && ex.upgrade === undefined) {
    bodyWatch.watch(ex, listener.bodyTimeoutMs);
  }
  if (route.handler !== undefined) {
    route.handler(ex);
    return;
  }
  if (ex.upgrade !== undefined) {
    const { socket, head } = ex.upgrade;
    ex.status = 101;
    deps.webSockets.forward(ex, route, ex.facts!, socket, head, (err, timedOut) => {
      ex.status = 0;
      respondError(ex, timedOut ? new UpstreamError('timeout', err.message) : new UpstreamError('connect-failure', 'WebSocket upgrade to the upstream failed'), state, false);
    });
    return;
  }
  const body = ex.body;
  if (body !== null && !Buffer.isBuffer(body) && smallEnough(ex, listener.bufferBodyBytes)) {
    // Read small bodies whole before an upstream connection is taken: a slow sender then holds
    // only its own socket, never one of the upstream pool's connections.
    readSmallBody(body, listener.bufferBodyBytes).then(
      (read) => {
        if (ex.res.writableEnded || ex.cancelled) return;
        ex.body = read;
        send(ex, route, state);
      },
      (err: unknown) => respondError(ex, err, state, true),
    );
    return;
  }
  send(ex, route, state);
}

function send(ex: Exchange, route: RoutePlan, state: ProxyState): void {
  ex.target = route.rewrite(ex.path) + ex.query;
  ex.outHeaders = buildUpstreamHeaders(ex, route.requestHeaders, ex.facts!, schemeOf(ex), ex.peer);
  ex.outHeaderBase = ex.outHeaders.length;
  // A body the upstream did not read to the end (413 mid-stream, a reset) must not be drained: close.
  ex.sending = route.send(ex).then(undefined, (err: unknown) => respondError(ex, err, state, ex.body !== null && !ex.req.complete));
}

/** `limits.bodyTimeout` passed without a byte of the body: 408, and the connection closes. */
function bodyTimedOut(ex: Exchange, timeoutMs: number, state: ProxyState): void {
  const err = new GatehouseError('request_timeout', `no byte of the request body arrived for ${timeoutMs}ms (limits.bodyTimeout)`);
  ex.attempt?.abort(err);
  respondError(ex, err, state, true);
}

/** A body whose length is known to fit, or a chunked one (read up to the limit, then streamed). */
function smallEnough(ex: Exchange, limit: number): boolean {
  const length = ex.facts!.contentLength;
  return length === undefined || Number(length) <= limit;
}

/** Turns any failure into the client's answer: problem+json, or a cut connection once headers went out. */
function respondError(ex: Exchange, err: unknown, state: ProxyState, bodyUnread: boolean): void {
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
function closed(ex: Exchange, state: ProxyState, deps: PipelineDeps): void {
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

const hasBody = (f: RequestFacts) => (f.contentLength !== undefined ? f.contentLength !== '0' : f.transferEncoding !== undefined);

/** `host[:port]` (RFC 9110 §7.2): a reg-name, an IPv4 or an [IPv6] literal; no userinfo, `%` or spaces. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=-]+)(?::\d{0,5})?$/;

/**
 * The Host header's name for matching: without port, lowercased, one trailing dot removed
 * (`Shop.Example.com.:443` -> `shop.example.com`); undefined when the value is not a valid Host.
 */
function hostName(header: string): string | undefined {
  if (!HOST.test(header)) return undefined;
  const end = header.charCodeAt(0) === 91 /* [ */ ? header.indexOf(']') + 1 : header.indexOf(':');
  let name = end > 0 ? header.slice(0, end) : header;
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name.toLowerCase();
}

/**
 * What the HTTP parser lets through but a proxy must not guess at (SPEC §3.1): a missing,
 * repeated or malformed Host, and a Transfer-Encoding other than `chunked` alone.
 */
function refuseFraming(facts: RequestFacts, host: string | undefined, httpMinor: number): GatehouseError | undefined {
  if (facts.hostCount > 1) {
    // RFC 9112 §3.2: more than one Host is refused, not guessed at (a request-smuggling vector).
    return new GatehouseError('bad_request', 'the request has more than one Host header');
  }
  if (facts.host === undefined ? httpMinor >= 1 : host === undefined || host === '') {
    return new GatehouseError('bad_request', facts.host === undefined ? 'an HTTP/1.1 request needs a Host header' : 'the Host header is not a valid host[:port]');
  }
  const te = facts.transferEncoding;
  if (te !== undefined && te !== 'chunked' && te.trim().toLowerCase() !== 'chunked') {
    // `gzip, chunked` would reach the upstream as plain chunked with the gzip coding dropped
    return new GatehouseError('not_implemented', `Transfer-Encoding '${te.slice(0, 64)}' is not supported; only chunked`);
  }
  return undefined;
}

function splitAbsoluteForm(url: string): { authority: string; pathAndQuery: string } | undefined {
  const m = /^https?:\/\/([^/?#@]+)([/?][^#]*)?$/i.exec(url);
  if (!m) return undefined;
  const rest = m[2] ?? '/';
  return { authority: m[1]!, pathAndQuery: rest.startsWith('?') ? `/${rest}` : rest };
}

const schemeOf = (ex: Exchange) => ((ex.req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');

function traceIdOf(traceparent: string): string {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}/.exec(traceparent);
  return m?.[1] ?? '';
}

const tooLarge = (max: number) => new GatehouseError('payload_too_large', `the request body is larger than the route's maxBodySize of ${max} bytes`);

/** A chunked body of unknown length, cut off with 413 once it passes the route's limit. */
function limitBody(req: IncomingMessage, max: number): Transform {
  let seen = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      seen += chunk.length;
      if (seen > max) done(tooLarge(max));
      else done(null, chunk);
    },
  });
  req.on('error', (err) => limiter.destroy(err));
  return req.pipe(limiter);
}
