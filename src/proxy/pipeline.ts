import { randomUUID } from 'node:crypto';
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { GatehouseError } from '../core/errors.js';
import { ANSWERED, Exchange } from '../core/exchange.js';
import { buildUpstreamHeaders } from '../core/forwarding.js';
import { scanRequestHeaders } from '../core/headers.js';
import { normalizePath } from '../routing/normalize.js';
import { setServerRoute, startServerSpan } from '../telemetry/http-spans.js';
import { createRouteLog } from '../telemetry/log.js';
import { hasBody, hostName, limitBody, refuseFraming, splitAbsoluteForm, tooLarge, traceIdOf } from './arrival.js';
import { createBodyWatch, readSmallBody, type BodyWatch } from './body.js';
import { acceptRequestId, clientAddress, isTrusted } from './headers.js';
import { closed, respondError, type PipelineDeps, type ProxyState } from './lifecycle.js';
import type { ListenerPlan, RoutePlan } from './plan.js';


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

/** One listener's request handling: the shared state, its dependencies, its body-timeout watch. */
interface Pipeline {
  readonly state: ProxyState;
  readonly deps: PipelineDeps;
  readonly bodyWatch: BodyWatch;
}

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
  /** What the stages and the forwarding of this listener's requests share. */
  const ctx: Pipeline = { state, deps, bodyWatch };

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
      ex.trustedPeer = true;
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
      forward(ex, route, ctx);
    } else {
      runStages(ex, route, 0, ctx);
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
function runStages(ex: Exchange, route: RoutePlan, from: number, ctx: Pipeline): void {
  const { state } = ctx;
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
          if (refusal === ANSWERED) return;
          if (refusal !== undefined) respondError(ex, refusal, state, ex.body !== null);
          else if (!ex.cancelled) runStages(ex, route, i + 1, ctx);
        },
        (err: unknown) => respondError(ex, err, state, ex.body !== null),
      );
      return;
    }
    if (outcome !== undefined) {
      if (outcome !== ANSWERED) respondError(ex, outcome, state, ex.body !== null);
      return;
    }
  }
  forward(ex, route, ctx);
}

/** Every check passed: the body may come (`100 Continue`), and the request goes on. */
function forward(ex: Exchange, route: RoutePlan, { state, bodyWatch }: Pipeline): void {
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
  ex.outHeaders = buildUpstreamHeaders(ex, route.requestHeaders);
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

