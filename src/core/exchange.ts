import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import type { Attributes, Span } from '@opentelemetry/api';
import type { ErrorCode, FailureKind, GatehouseError } from './errors.js';
import { findHeader, type RequestFacts } from './headers.js';
import type { Priority } from './wait-queue.js';

/** What a stage may know of the route it runs on; the full plan stays inside the proxy. */
export interface RouteInfo {
  readonly name: string;
  /** The match template, e.g. `/api/checkout/*`: the span name's `http.route`. */
  readonly httpRoute: string;
  readonly upstream: string;
  /** `priority`: the order in which its requests leave a queue (quota, provider budget). Default: normal. */
  readonly priority?: Priority;
  /** Writes a policy decision (a span event) as a debug line; undefined unless the log level is debug. */
  readonly log: ((ex: Exchange, name: string, attributes: Attributes | undefined) => void) | undefined;
}

/** What a stage returns when it answered the request itself (a cache hit): nothing more is done. */
export const ANSWERED: unique symbol = Symbol('gatehouse.answered');

/** A stage's verdict: a refusal, `ANSWERED` (it wrote the answer), or undefined to go on. */
export type StageOutcome = GatehouseError | typeof ANSWERED | undefined;

/**
 * A step between routing and forwarding (jwt, quota, cache, ...). An expected refusal is a
 * returned GatehouseError, not a throw; undefined lets the request continue.
 */
export type Stage = (ex: Exchange) => StageOutcome | Promise<StageOutcome>;

/**
 * Sees the upstream's answer of a proxied attempt on its way to the client: a cache filling a
 * copy, coalesced requests waiting for the same answer. Set per request (`ex.tap`) by a policy;
 * only routes compiled with one read it, so other routes pay nothing.
 */
export interface ResponseTap {
  /**
   * Before the answer is committed: true takes it (it is drained and the Send resolves
   * uncommitted), e.g. a 304 to the cache's own revalidation, or a 5xx the cache answers with a
   * stale copy instead.
   */
  intercept(statusCode: number, rawHeaders: readonly Buffer[]): boolean;
  /** The answer is committed to the client: its status and headers as the upstream sent them. */
  headers(statusCode: number, rawHeaders: readonly Buffer[]): void;
  data(chunk: Buffer): void;
  complete(): void;
  /** The answer was cut after its headers. */
  fail(): void;
}

/**
 * Decides, on an upstream answer's status line and headers and before anything reaches the
 * client, whether that answer is discarded for another try. Compiled once per route; whatever it
 * decides per request it keeps on the exchange (`retryDelayMs`).
 */
export type ResponseFilter = (ex: Exchange, statusCode: number, rawHeaders: readonly Buffer[]) => boolean;

/** The attempt in flight, as the exchange may steer it. */
export interface AttemptControl {
  /**
   * Ends the attempt with `reason`: at once when it is still waiting for a connection, else by
   * aborting the upstream request. Once response headers went to the client it cuts the stream.
   */
  abort(reason: Error): void;
}

/** What the request path needs to know of the listener a request came in on. */
export interface ListenerFacts {
  readonly name: string;
  /** `limits.bodyTimeout`: longest a request body may go without a byte arriving. */
  readonly bodyTimeoutMs: number;
  /** `limits.bufferBodies`: bodies up to this size are read whole before being forwarded. */
  readonly bufferBodyBytes: number;
}

/**
 * One request's state, from arrival to the access-log line. One object per request with a fixed
 * shape: stages and policies read and write these fields instead of allocating their own.
 * A leaf module (types only): the concerns import it.
 */
export class Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** performance.now() at arrival. */
  readonly startMs: number;
  readonly method: string;
  /** Normalised request path (dot segments removed, unreserved percent-encoding decoded). */
  path = '/';
  /** `?a=b` or ''. Passed upstream unchanged. */
  query = '';
  /** The request's host without port, lowercased; '' when none was sent. */
  host = '';
  /** The Host header as received, for X-Forwarded-Host. */
  hostHeader = '';
  /** The client's address: the peer, or the first untrusted hop of X-Forwarded-For. */
  clientIp = '';
  /** The peer is one of the listener's `trustedProxies`: its X-Forwarded-* and Forwarded are believed. */
  trustedPeer = false;
  /** The peer's X-Forwarded-For when the peer is a trusted proxy, else undefined. */
  forwardedFor: string | undefined = undefined;
  forwardedProto: string | undefined = undefined;
  forwardedHost: string | undefined = undefined;
  requestId = '';
  route: RouteInfo | undefined = undefined;
  /** Headers that stages add to the upstream request: [name, value, ...]. */
  upstreamHeaders: string[] | undefined = undefined;
  /** Headers that stages add to the client response, also on errors: [name, value, ...]. */
  responseHeaders: string[] | undefined = undefined;
  /** Verified JWT claims, for stages that key on them. */
  claims: Readonly<Record<string, unknown>> | undefined = undefined;
  /** Path and query sent upstream (after rewrite), before the endpoint's base path. */
  target = '';
  /**
   * The upstream request headers built once per request; each attempt truncates to
   * `outHeaderBase` and appends its own Host and traceparent.
   */
  outHeaders: string[] = [];
  outHeaderBase = 0;
  /** Clock.monotonic() by which the upstream's headers must arrive (the route `timeout`). */
  deadlineAt = Infinity;
  /** The route deadline's timer; cleared once the upstream's headers are committed to the client. */
  deadlineTimer: NodeJS.Timeout | undefined = undefined;
  /** The upstream request body: the client's stream, a Buffer kept for replay, or none. */
  body: Readable | Buffer | null = null;
  /**
   * Set by a retry policy for the attempt about to run: true for an answer that should be
   * discarded and tried again. Unset on the last attempt, whose answer always goes to the client.
   */
  retryable: ResponseFilter | undefined = undefined;
  /** Set by `retryable` when it claims an answer: the wait before the next try; -1 = none claimed. */
  retryDelayMs = -1;
  /**
   * Set by the outbox's `fallback` mode: consulted for an answer no retry claimed; true holds it
   * back from the client (the attempt resolves uncommitted) so the request is stored instead.
   */
  fallback: ResponseFilter | undefined = undefined;

  /** What watches the upstream's answer (the cache, coalescing); undefined on routes without them. */
  tap: ResponseTap | undefined = undefined;

  attempts = 0;
  /** Why a retry the route asked for was not made (`budget`, `deadline`); for the access log. */
  retrySkipped: string | undefined = undefined;
  status = 0;
  errorCode: ErrorCode | undefined = undefined;
  /** Set when the exchange was cancelled: by the client going away or by the route deadline. */
  cancelled: FailureKind | undefined = undefined;
  /** The attempt in flight, if any. */
  attempt: AttemptControl | undefined = undefined;
  span: Span | undefined = undefined;
  traceId = '';
  /** Set for an HTTP Upgrade (WebSocket) request: the socket to relay once stages pass. */
  upgrade: { readonly socket: Duplex; readonly head: Buffer } | undefined = undefined;
  /** The forwarding chain (policies and attempts), settled once every policy is done; never rejects. */
  sending: Promise<void> | undefined = undefined;
  /** Outcome notes for the access log, e.g. a reset after the headers went out. */
  note: string | undefined = undefined;
  /** The client sent `Expect: 100-continue` and has not been told to go on yet. */
  expectContinue = false;
  /** The peer's address (the TCP connection's remote end). */
  peer = '';
  /** The client connection (kept: node:http may detach it from the request before 'close'). */
  connection: Socket | null = null;
  /** What the first pass over the request headers found (set by the pipeline before routing). */
  facts: RequestFacts | undefined = undefined;
  /** The listener the request came in on. */
  listener: ListenerFacts | undefined = undefined;
  /** The body-timeout watch's bookkeeping: bytes read on the socket when last checked, and when. */
  bodySeenBytes = -1;
  bodySeenAt = 0;

  #controller: AbortController | undefined = undefined;
  #cancelReason: Error | undefined = undefined;

  constructor(req: IncomingMessage, res: ServerResponse, startMs: number) {
    this.req = req;
    this.res = res;
    this.startMs = startMs;
    this.method = req.method ?? 'GET';
  }

  /** Aborted when the exchange is cancelled. Created on first use: most requests never ask. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.cancelled && !this.#controller.signal.aborted) this.#controller.abort(this.#cancelReason);
    return this.#controller.signal;
  }

  /** Stops everything in flight for this request: the attempt, waits, queues. Idempotent. */
  cancel(kind: FailureKind, reason: Error): void {
    if (this.cancelled) return;
    this.cancelled = kind;
    this.#cancelReason = reason;
    this.#controller?.abort(reason);
    this.attempt?.abort(reason);
  }

  /** The first value of a request header, by lowercase name. */
  header(lowerName: string): string | undefined {
    return findHeader(this.req.rawHeaders, lowerName);
  }

  /** Adds a header to the upstream request (after the client's copy was stripped at compile time). */
  setUpstreamHeader(name: string, value: string): void {
    (this.upstreamHeaders ??= []).push(name, value);
  }

  /** Adds a header to the client response, whoever answers: the upstream or gatehouse. */
  setResponseHeader(name: string, value: string): void {
    (this.responseHeaders ??= []).push(name, value);
  }

  /** A span event on the request's SERVER span (and a debug line); free when tracing is off and the log level above debug. */
  event(name: string, attributes?: Attributes): void {
    this.span?.addEvent(name, attributes);
    this.route?.log?.(this, name, attributes);
  }
}
