import type { Duplex } from 'node:stream';
import type { Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { GatehouseError } from '../core/errors.js';
import type { AttemptControl, Exchange } from '../core/exchange.js';
import { errorOutcome, statusOutcome, type Outcome } from '../core/outcome.js';
import { type AttemptResult, type Send } from '../core/send.js';
import { tlsReason, UpstreamError, type FailureKind } from '../core/errors.js';
import type { UpstreamCall, UpstreamClient, UpstreamResult } from '../core/upstream.js';
import type { GateRequest, Ticket, UpstreamGate } from '../core/budget.js';
import { findHeader } from '../core/headers.js';
import { endClientSpan, startCallSpan, startClientSpan } from '../telemetry/http-spans.js';
import { requestFields } from '../telemetry/log.js';
import { recordClient, type Metrics } from '../telemetry/metrics.js';
import type { Tracing } from '../telemetry/tracing.js';
import { decideHedge, isHedgeable, type Hedging } from '../resilience/hedge.js';
import { buildResponseHeaders, type ResponseHeaderPlan } from './headers.js';
import type { Endpoint, UpstreamRuntime } from './upstreams.js';

/*
 * The one way to an upstream (SPEC §7): a proxied attempt, a WebSocket upgrade and a call made
 * for a delivery all go through `Attempt`, which applies the upstream's breaker and bulkhead, its
 * credentials, endpoint choice and Host, the CLIENT span and trace context, the client-duration
 * metric, passive ejection and the breaker's record — the same way for all of them. Subclasses
 * only decide where the answer goes: into the client's response, into a buffer, or onto a
 * WebSocket.
 */

export interface DispatchDeps {
  readonly tracing: Tracing | undefined;
  readonly metrics: Metrics;
  /** True while the server drains: answers then carry `Connection: close`. */
  readonly isDraining: () => boolean;
  /** TLS failures are logged (with their reason) as well as counted and traced. */
  readonly logger?: Logger;
}

/** What an attempt sends once its endpoint is chosen. */
interface Outgoing {
  readonly method: string;
  /** Path and query, the endpoint's base path included. */
  readonly path: string;
  readonly headers: string[];
  readonly body: Dispatcher.DispatchOptions['body'];
  readonly upgrade?: string;
}

/**
 * undici's handler protocol (onConnect/onHeaders/onData/onComplete/onError): the lowest-overhead
 * way to consume a response. A class, since one is made per attempt and a stable shape is faster.
 */
abstract class Attempt implements Dispatcher.DispatchHandler, AttemptControl {
  protected statusCode = 0;
  protected rawHeaders: Buffer[] = [];
  protected ep: Endpoint | undefined = undefined;
  protected span: Span | undefined = undefined;
  /** undici's abort, once the request has a connection. */
  private abortRequest: ((err?: Error) => void) | undefined = undefined;
  /** Set when the attempt was ended before it had a connection. */
  private abandoned: Error | undefined = undefined;
  protected done = false;
  /** The breaker's admission: 'none' without a breaker, or before admission. */
  private admitted: 'closed' | 'probe' | 'none' = 'none';
  private holdsBulkhead = false;
  private credential: string | undefined = undefined;
  private startMs = 0;
  /** The provider budget's admission (SPEC §12), when the upstream has a gate: told how the attempt ended. */
  protected ticket: Ticket | undefined = undefined;

  constructor(
    protected readonly upstream: UpstreamRuntime,
    protected readonly deps: DispatchDeps,
    /** The client exchange this attempt is for; undefined for a call (a delivery). */
    protected readonly ex: Exchange | undefined,
    /** A second or later try: counted apart for the retry budget. */
    private readonly isRetry: boolean,
  ) {}

  /** The request to send through `ep`. */
  protected abstract outgoing(ep: Endpoint, credential: string | undefined): Outgoing;
  /** The CLIENT span of this attempt; `path` is the full path and query sent. */
  protected abstract startSpan(tracing: Tracing, ep: Endpoint, path: string): Span;
  /** Refused before anything was sent: a GatehouseError, or the exchange was cancelled. */
  protected abstract refused(err: Error): void;
  /** The attempt failed after it was sent (no answer, or cut mid-answer). */
  protected abstract failed(err: Error): void;

  /** Admission (breaker, bulkhead), then credentials, then the endpoint and undici. */
  protected start(): void {
    const { upstream } = this;
    const { breaker, bulkhead } = upstream;
    if (breaker !== undefined) {
      const admitted = breaker.admit(this.ex);
      if (typeof admitted !== 'string') return this.refuse(admitted);
      this.admitted = admitted;
    }
    if (bulkhead !== undefined) {
      if (bulkhead.active >= bulkhead.max) {
        return this.refuse(new GatehouseError('overloaded', `upstream '${upstream.name}' already has ${bulkhead.max} requests in flight (maxConcurrent)`));
      }
      bulkhead.active++;
      this.holdsBulkhead = true;
    }
    const credentials = upstream.credentials;
    if (credentials === undefined) return this.connect(undefined);
    const current = credentials.current();
    if (current !== undefined) return this.connect(current);
    credentials.value(this.signal(), this.ex).then(
      (value) => (value instanceof GatehouseError ? this.refuse(value) : this.connect(value)),
      (err: unknown) => this.refuse(err as Error),
    );
  }

  /** Aborts a call (shutdown, timeout); an exchange's attempt uses the exchange's signal. */
  protected abstract signal(): AbortSignal;

  private connect(credential: string | undefined): void {
    if (this.done) return; // ended while waiting for a token
    const ep = this.upstream.pick();
    if (ep === undefined) return this.refuse(new GatehouseError('no_healthy_upstream', `no endpoint of upstream '${this.upstream.name}' is healthy`));
    this.ep = ep;
    this.credential = credential;
    const out = this.outgoing(ep, credential);
    if (this.deps.tracing !== undefined) {
      this.span = this.startSpan(this.deps.tracing, ep, out.path);
      this.deps.tracing.inject(this.span, out.headers);
    }
    ep.inFlight++;
    this.upstream.inFlight++;
    if (this.isRetry) this.upstream.retryAttemptsInFlight++;
    this.startMs = performance.now();
    const options: Dispatcher.DispatchOptions = { path: out.path, method: out.method, headers: out.headers, body: out.body, blocking: false };
    if (out.upgrade !== undefined) options.upgrade = out.upgrade;
    ep.pool.dispatch(options, this);
  }

  private refuse(err: Error): void {
    if (this.done) return;
    this.done = true;
    if (this.ticket !== undefined) {
      this.ticket.fail(false, false);
      this.ticket = undefined;
    }
    this.release('ignored');
    this.refused(err);
  }

  /** Ends the attempt with `reason`: at once when it has no connection yet, else by aborting it. */
  abort(reason: Error): void {
    if (this.done) return;
    if (this.abortRequest !== undefined) {
      this.abortRequest(reason); // undici answers with onError
      return;
    }
    if (this.ep === undefined) {
      this.refuse(reason); // still admitting or waiting for a token
      return;
    }
    // Queued for a connection (connecting, or the pool is busy): answer now rather than when a
    // socket frees up; the queued request is dropped in onConnect.
    this.abandoned = reason;
    this.onError(reason);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.abandoned !== undefined) {
      abort(this.abandoned);
      return;
    }
    const cancelled = this.ex?.cancelled;
    if (cancelled !== undefined) {
      abort(new UpstreamError(cancelled, 'request cancelled'));
      return;
    }
    this.abortRequest = abort;
    // a host-name endpoint: the span learns the IP undici connected to
    if (this.span !== undefined && this.ep!.peerAddress === undefined) this.deps.tracing!.recordPeer(this.span, abort);
  }

  abstract onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean;
  abstract onData(chunk: Buffer): boolean;
  abstract onComplete(): void;

  onError(err: Error): void {
    if (this.done) return; // an abandoned attempt's queued request, dropped later
    const failure = err instanceof UpstreamError || err instanceof GatehouseError ? err : toUpstreamError(err, this.ex);
    this.settle(failure);
    this.failed(failure);
  }

  /** The attempt is over: counters, ejection and breaker, the metric, the span. */
  protected settle(failure: Error | undefined): void {
    if (this.done) return;
    this.done = true;
    const { ep, upstream } = this;
    if (ep !== undefined) {
      ep.inFlight--;
      upstream.inFlight--;
      if (this.isRetry) upstream.retryAttemptsInFlight--;
    }
    const outcome = failure === undefined ? statusOutcome(this.statusCode) : errorOutcome(failure);
    if (this.ticket !== undefined) {
      if (failure === undefined) this.ticket.answer(this.statusCode, this.rawHeaders, undefined, false);
      else this.ticket.fail(ep !== undefined, failure instanceof UpstreamError && failure.kind === 'timeout');
      this.ticket = undefined;
    }
    this.release(outcome);
    if (ep === undefined) return;
    upstream.report(ep, outcome, this.ex);
    if (this.statusCode === 401 && this.credential !== undefined) upstream.credentials!.rejected(this.credential);
    const errorType = failure === undefined ? undefined : failure instanceof UpstreamError ? failure.kind : (failure as GatehouseError).code;
    recordClient(this.deps.metrics, (performance.now() - this.startMs) / 1000, upstream.name, this.routeName(), ep, this.method(), this.statusCode, errorType);
    if (errorType === 'tls') this.reportTls(failure as UpstreamError);
    if (this.span !== undefined) endClientSpan(this.span, this.statusCode, errorType);
  }

  protected abstract routeName(): string;
  protected abstract method(): string;

  /** Frees the admission: the bulkhead slot, and the breaker learns the outcome. */
  private release(outcome: Outcome): void {
    if (this.holdsBulkhead) {
      this.holdsBulkhead = false;
      this.upstream.bulkhead!.active--;
    }
    if (this.admitted !== 'none') {
      this.upstream.breaker!.record(outcome, this.admitted, this.ex);
      this.admitted = 'none';
    }
  }

  /** A certificate that fails verification: the reason goes to the log and the client span. */
  private reportTls(failure: UpstreamError): void {
    const reason = tlsReason(failure);
    this.span?.addEvent('gatehouse.tls.failure', { reason, message: failure.message });
    const fields = this.ex === undefined ? {} : requestFields(this.ex);
    this.deps.logger?.warn({ ...fields, upstream: this.upstream.name, endpoint: this.ep?.url, reason, message: failure.message }, 'TLS with the upstream failed');
  }
}

// ---------------------------------------------------------------- proxied attempts

/**
 * The innermost Send of a route: one try against one endpoint. The response streams straight
 * from undici into the client's ServerResponse with backpressure (no intermediate stream, no
 * pipeline()), unless `ex.retryable` claims it for another try, in which case nothing reaches
 * the client. An upgrade request (WebSocket) is relayed once the upstream switches protocols.
 */
export function proxyAttempt(upstream: UpstreamRuntime, plan: ResponseHeaderPlan, host: string | undefined, deps: DispatchDeps, readPath?: ReadPathOptions): Send {
  // the config refuses a read path or hedging on a route whose upstream has a budget
  if (readPath !== undefined) return watchedAttempt(upstream, plan, host, deps, readPath.hedging);
  return function attempt(ex: Exchange): Promise<AttemptResult> {
    const gate = upstream.gate;
    if (gate !== undefined) return gatedAttempt(gate, upstream, plan, host, deps, ex);
    return new Promise<AttemptResult>((resolve, reject) => {
      if (ex.cancelled) {
        reject(new UpstreamError(ex.cancelled, 'request cancelled'));
        return;
      }
      new ProxyAttempt(upstream, deps, ex, plan, host, resolve, reject, undefined).begin();
    });
  };
}

/** A route with a read path (cache, coalescing) or hedging: its attempts are watched. */
export interface ReadPathOptions {
  /** `hedge`: undefined = one try at a time. */
  readonly hedging: Hedging | undefined;
}

/** An answer the budget absorbed (a provider throttle): not sent, kept in case no retry can be made. */
interface Absorbed extends AttemptResult {
  readonly absorbed: Buffer;
}

const isAbsorbed = (r: AttemptResult): r is Absorbed => (r as Partial<Absorbed>).absorbed !== undefined;

/**
 * An attempt through the upstream's provider budget: admitted first (perhaps after a wait, in
 * priority order), and tried again while the budget absorbs the provider's throttle answers.
 * When the budget cannot admit the retry in time, the throttle answer it held goes to the client
 * unchanged (SPEC §12).
 */
async function gatedAttempt(gate: UpstreamGate, upstream: UpstreamRuntime, plan: ResponseHeaderPlan, host: string | undefined, deps: DispatchDeps, ex: Exchange): Promise<AttemptResult> {
  let held: Absorbed | undefined;
  for (;;) {
    if (ex.cancelled) throw new UpstreamError(ex.cancelled, 'request cancelled');
    const admitted = gate.admit(exchangeRequest(ex, held !== undefined));
    const ticket = admitted instanceof Promise ? await admitted : admitted;
    if (ticket === undefined) throw new UpstreamError(ex.cancelled ?? 'aborted', 'request cancelled');
    if (ticket instanceof GatehouseError) {
      if (held === undefined) throw ticket;
      return sendHeld(ex, plan, held, deps);
    }
    const result = await new Promise<AttemptResult>((resolve, reject) => new ProxyAttempt(upstream, deps, ex, plan, host, resolve, reject, ticket).begin());
    if (!isAbsorbed(result)) return result;
    held = result;
  }
}

function exchangeRequest(ex: Exchange, resend: boolean): GateRequest {
  return {
    ex,
    method: ex.method,
    header: (name) => ex.header(name),
    body: Buffer.isBuffer(ex.body) ? ex.body : null,
    priority: ex.route?.priority ?? 'normal',
    deadlineAt: ex.deadlineAt,
    signal: ex.signal,
    resend,
  };
}

/** The provider's own answer, held back while a retry was possible, goes to the client after all. */
function sendHeld(ex: Exchange, plan: ResponseHeaderPlan, held: Absorbed, deps: DispatchDeps): AttemptResult {
  if (ex.deadlineTimer !== undefined) {
    clearTimeout(ex.deadlineTimer);
    ex.deadlineTimer = undefined;
  }
  const res = ex.res;
  if (!res.destroyed) {
    ex.status = held.statusCode;
    res.writeHead(held.statusCode, buildResponseHeaders(ex, plan, held.rawHeaders, deps.isDraining()));
    res.end(held.absorbed);
  }
  return { statusCode: held.statusCode, rawHeaders: held.rawHeaders, committed: true };
}

/** Where a streamed answer's cost is looked for (Shopify writes `extensions` last). */
const TAIL_BYTES = 4096;

class ProxyAttempt extends Attempt {
  protected committed = false;
  protected discard = false;
  private resume: () => void = noop;
  /** The budget holds the answer back until it has read it (or it is too long to hold). */
  private held: Buffer[] | undefined = undefined;
  private heldBytes = 0;
  private holdLimit = 0;
  /** The last bytes of an answer too long to hold, for the budget to read its cost from. */
  private tail: Buffer[] | undefined = undefined;
  private tailBytes = 0;

  constructor(
    upstream: UpstreamRuntime,
    deps: DispatchDeps,
    protected readonly exchange: Exchange,
    private readonly plan: ResponseHeaderPlan,
    /** `rewrite.host`: undefined = the endpoint's authority, 'preserve' = the client's Host. */
    private readonly host: string | undefined,
    protected readonly resolve: (r: AttemptResult) => void,
    protected readonly reject: (e: unknown) => void,
    ticket: Ticket | undefined,
  ) {
    super(upstream, deps, exchange, exchange.attempts > 0);
    this.ticket = ticket;
  }

  begin(): void {
    this.exchange.attempt = this;
    this.start();
  }

  protected signal(): AbortSignal {
    return this.exchange.signal;
  }

  protected routeName(): string {
    return this.exchange.route?.name ?? '';
  }

  protected method(): string {
    return this.exchange.method;
  }

  protected outgoing(ep: Endpoint, credential: string | undefined): Outgoing {
    const ex = this.exchange;
    ex.attempts++;
    const headers = ex.outHeaders;
    headers.length = ex.outHeaderBase;
    const host = this.host;
    headers.push('host', host === undefined ? ep.authority : host === 'preserve' ? ex.hostHeader || ep.authority : host);
    if (credential !== undefined) headers.push(this.upstream.credentials!.header, credential);
    const upgrade = ex.upgrade === undefined ? undefined : (ex.header('upgrade') ?? 'websocket');
    return { method: ex.method, path: ep.basePath + ex.target, headers, body: upgrade === undefined ? ex.body : null, upgrade };
  }

  protected startSpan(tracing: Tracing, ep: Endpoint, path: string): Span {
    return startClientSpan(tracing, this.exchange, ep, path);
  }

  protected refused(err: Error): void {
    if (this.exchange.attempt === this) this.exchange.attempt = undefined;
    this.reject(err);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx: informational, not forwarded
    this.statusCode = statusCode;
    this.rawHeaders = rawHeaders;
    this.resume = resume;
    if (this.ticket !== undefined && this.exchange.upgrade === undefined) {
      const hold = this.ticket.inspect(statusCode, rawHeaders);
      if (hold > 0) {
        this.holdLimit = hold;
        this.held = [];
        return true;
      }
    }
    this.respond();
    return true;
  }

  /** The answer's status line and headers go to the client, unless a retry claims the answer. */
  private respond(): void {
    const ex = this.exchange;
    const { statusCode, rawHeaders } = this;
    if (this.discards(ex, statusCode, rawHeaders)) {
      this.discard = true; // drained so the connection stays reusable; nothing reaches the client
      return;
    }
    const res = ex.res;
    if (ex.deadlineTimer !== undefined) {
      clearTimeout(ex.deadlineTimer);
      ex.deadlineTimer = undefined;
    }
    if (res.destroyed) return;
    this.committed = true;
    ex.status = statusCode;
    res.writeHead(statusCode, buildResponseHeaders(ex, this.plan, rawHeaders, this.deps.isDraining() || ex.upgrade !== undefined));
  }

  /** true: this answer does not go to the client (another try, or a read path, takes its place). */
  protected discards(ex: Exchange, statusCode: number, rawHeaders: Buffer[]): boolean {
    return (ex.retryable !== undefined && ex.retryable(ex, statusCode, rawHeaders)) || (ex.fallback !== undefined && ex.fallback(ex, statusCode, rawHeaders));
  }

  onData(chunk: Buffer): boolean {
    if (this.held !== undefined) return this.hold(chunk);
    if (this.discard) return true;
    if (this.tail !== undefined) this.keepTail(chunk);
    return this.write(chunk);
  }

  private write(chunk: Buffer): boolean {
    const res = this.exchange.res;
    if (res.write(chunk)) return true;
    // Backpressure: undici stops reading until resume(). Listening only now spares most
    // responses (one write) a listener.
    res.once('drain', this.resume);
    return false;
  }

  /** Holds an answer back for the budget; one longer than it may hold streams on from here. */
  private hold(chunk: Buffer): boolean {
    const held = this.held!;
    held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes <= this.holdLimit) return true;
    this.held = undefined;
    this.tail = [];
    this.respond();
    if (this.discard) return true;
    let more = true;
    for (const c of held) {
      this.keepTail(c);
      more = this.exchange.res.write(c);
    }
    if (!more) this.exchange.res.once('drain', this.resume);
    return more;
  }

  private keepTail(chunk: Buffer): void {
    const tail = this.tail!;
    tail.push(chunk);
    this.tailBytes += chunk.length;
    while (tail.length > 1 && this.tailBytes - tail[0]!.length >= TAIL_BYTES) this.tailBytes -= tail.shift()!.length;
  }

  /** The budget reads the whole answer: absorbed (a throttle gatehouse retries), or sent now. */
  private answerBudget(): boolean {
    const ticket = this.ticket!;
    this.ticket = undefined;
    const held = this.held;
    if (held === undefined) {
      const tail = this.tail;
      ticket.answer(this.statusCode, this.rawHeaders, tail === undefined ? undefined : Buffer.concat(tail, this.tailBytes), false);
      return false;
    }
    this.held = undefined;
    const body = held.length === 1 ? held[0]! : Buffer.concat(held, this.heldBytes);
    if (ticket.answer(this.statusCode, this.rawHeaders, body, true)) {
      this.finish();
      this.resolve({ statusCode: this.statusCode, rawHeaders: this.rawHeaders, committed: false, absorbed: body } as Absorbed);
      return true;
    }
    this.respond();
    if (this.committed && body.length > 0) this.exchange.res.write(body);
    return false;
  }

  onComplete(): void {
    const ex = this.exchange;
    if (this.ticket !== undefined && this.answerBudget()) return;
    if (this.committed) {
      ex.res.end();
      // an upgrade the upstream refused: its answer went out on the raw socket, which ends with it
      if (ex.upgrade !== undefined) ex.res.once('finish', () => ex.upgrade?.socket.end());
    }
    this.finish();
    this.resolve({ statusCode: this.statusCode, rawHeaders: this.rawHeaders, committed: this.committed });
  }

  /** The upstream switched protocols: its 101 goes to the client, then bytes flow both ways. */
  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, upstreamSocket: Duplex): void {
    const ex = this.exchange;
    const client = ex.upgrade!;
    if (ex.deadlineTimer !== undefined) {
      clearTimeout(ex.deadlineTimer);
      ex.deadlineTimer = undefined;
    }
    this.statusCode = statusCode;
    this.committed = true;
    ex.status = statusCode;
    let head = `HTTP/1.1 ${statusCode} Switching Protocols\r\n`;
    const raw = (rawHeaders ?? []) as (Buffer | string)[];
    for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]!.toString()}: ${raw[i + 1]!.toString()}\r\n`;
    head += `x-request-id: ${ex.requestId}\r\n\r\n`;
    const { socket } = client;
    socket.write(head);
    if (client.head.length > 0) upstreamSocket.write(client.head);
    const closeBoth = () => {
      socket.destroy();
      upstreamSocket.destroy();
    };
    upstreamSocket.on('error', closeBoth).on('close', closeBoth);
    socket.on('error', closeBoth).on('close', closeBoth);
    upstreamSocket.pipe(socket);
    socket.pipe(upstreamSocket);
    this.finish();
    this.resolve({ statusCode, rawHeaders: [], committed: true });
  }

  protected failed(failure: Error): void {
    const ex = this.exchange;
    if (!this.committed) {
      this.reject(failure);
      return;
    }
    // The client already has a status line: cut the connection so it cannot mistake a
    // truncated body for a whole one (never a fake 200). Unless the client itself left, the
    // failure is the upstream's: the access log, metrics and span say so.
    if (!(failure instanceof UpstreamError && failure.kind === 'aborted')) {
      ex.errorCode = failure instanceof UpstreamError ? (failure.kind === 'timeout' ? 'upstream_timeout' : 'bad_gateway') : (failure as GatehouseError).code;
      ex.note = `upstream ${failure instanceof UpstreamError ? failure.kind : 'error'} after response headers: ${failure.message}`;
    }
    ex.res.destroy();
    this.resolve({ statusCode: this.statusCode, rawHeaders: this.rawHeaders, committed: true });
  }

  private finish(): void {
    this.settle(undefined);
    if (this.exchange.attempt === this) this.exchange.attempt = undefined;
  }

  protected override settle(failure: Error | undefined): void {
    super.settle(failure);
    if (this.exchange.attempt === this) this.exchange.attempt = undefined;
  }
}

/**
 * An attempt of a route with a read path or hedging: the exchange's tap (the cache, coalescing)
 * sees the answer before it is committed and as it streams, and a hedged try must win the race
 * of its group before its answer may go to the client. Routes without these never make one.
 */
class WatchedAttempt extends ProxyAttempt {
  constructor(
    upstream: UpstreamRuntime,
    deps: DispatchDeps,
    exchange: Exchange,
    plan: ResponseHeaderPlan,
    host: string | undefined,
    resolve: (r: AttemptResult) => void,
    reject: (e: unknown) => void,
    private readonly group: HedgeGroup | undefined,
  ) {
    super(upstream, deps, exchange, plan, host, resolve, reject, undefined);
  }

  override begin(): void {
    if (this.group === undefined) this.exchange.attempt = this;
    this.start();
  }

  protected override discards(ex: Exchange, statusCode: number, rawHeaders: Buffer[]): boolean {
    // a hedged try that answers second is aborted by the winner; this is its race lost by a hair
    if (this.group !== undefined && !this.group.claim(this)) return true;
    if (super.discards(ex, statusCode, rawHeaders)) return true;
    const tap = ex.tap;
    if (tap === undefined) return false;
    if (tap.intercept(statusCode, rawHeaders)) return true;
    if (!ex.res.destroyed) tap.headers(statusCode, rawHeaders);
    return false;
  }

  override onData(chunk: Buffer): boolean {
    if (this.committed) this.exchange.tap?.data(chunk);
    return super.onData(chunk);
  }

  override onComplete(): void {
    if (this.committed) this.exchange.tap?.complete();
    super.onComplete();
  }

  protected override failed(failure: Error): void {
    if (this.committed) this.exchange.tap?.fail();
    super.failed(failure);
  }
}

function watchedAttempt(upstream: UpstreamRuntime, plan: ResponseHeaderPlan, host: string | undefined, deps: DispatchDeps, hedging: Hedging | undefined): Send {
  return function attempt(ex: Exchange): Promise<AttemptResult> {
    return new Promise<AttemptResult>((resolve, reject) => {
      if (ex.cancelled) {
        reject(new UpstreamError(ex.cancelled, 'request cancelled'));
        return;
      }
      if (hedging === undefined || !isHedgeable(ex)) {
        new WatchedAttempt(upstream, deps, ex, plan, host, resolve, reject, undefined).begin();
        return;
      }
      new HedgeGroup(ex, hedging, resolve, reject, (group, res, rej) => new WatchedAttempt(upstream, deps, ex, plan, host, res, rej, group)).start();
    });
  };
}

/**
 * The tries of one hedged request: the first goes out at once, another each time `after` passes
 * without response headers (while the hedge decision allows), and the first try whose headers
 * arrive wins: the others are aborted (an aborted try says nothing about the upstream's health),
 * and only the winner's answer reaches the client. The exchange's deadline and cancellation
 * abort every try. Settles like one attempt: with the winner's result, or with the last failure
 * once every try failed.
 */
class HedgeGroup implements AttemptControl {
  private readonly tries: WatchedAttempt[] = [];
  private winner: WatchedAttempt | undefined = undefined;
  private running = 0;
  private hedges = 0;
  private reported = 0;
  private timer: NodeJS.Timeout | undefined = undefined;
  private done = false;

  constructor(
    private readonly ex: Exchange,
    private readonly hedging: Hedging,
    private readonly resolve: (r: AttemptResult) => void,
    private readonly reject: (e: unknown) => void,
    private readonly make: (group: HedgeGroup, resolve: (r: AttemptResult) => void, reject: (e: unknown) => void) => WatchedAttempt,
  ) {}

  start(): void {
    this.ex.attempt = this;
    this.launch(false);
    if (!this.done) this.timer = setTimeout(hedgeLater, this.hedging.plan.afterMs, this);
  }

  /** `after` passed with no answer: another try, if the decision allows. */
  hedge(): void {
    this.timer = undefined;
    if (this.done || this.winner !== undefined || this.ex.cancelled !== undefined) return;
    const { plan, load } = this.hedging;
    const d = decideHedge(plan, this.hedges, load.retriesInFlight, load.inFlight - load.retryAttemptsInFlight);
    if (!d.hedge) return;
    this.hedges++;
    load.retriesInFlight++; // a hedge holds a slot of the retry budget until its try ends
    this.launch(true);
    if (!this.done && this.hedges < plan.max) this.timer = setTimeout(hedgeLater, plan.afterMs, this);
  }

  private launch(isHedge: boolean): void {
    this.running++;
    let settled = false;
    const end = () => {
      if (settled) return false;
      settled = true;
      this.running--;
      if (isHedge) this.hedging.load.retriesInFlight--;
      return true;
    };
    const attempt: WatchedAttempt = this.make(
      this,
      (r) => {
        if (end() && attempt === this.winner) this.finish(() => this.resolve(r));
      },
      (e) => {
        if (!end()) return;
        if (attempt === this.winner || (this.winner === undefined && this.running === 0)) this.finish(() => this.reject(e));
      },
    );
    this.tries.push(attempt);
    attempt.begin();
  }

  /** The first try with response headers wins; the others are aborted. */
  claim(attempt: WatchedAttempt): boolean {
    if (this.winner !== undefined) return this.winner === attempt;
    this.winner = attempt;
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const t of this.tries) if (t !== attempt) t.abort(new UpstreamError('aborted', 'another try of this request answered first'));
    this.report();
    return true;
  }

  abort(reason: Error): void {
    for (const t of this.tries) t.abort(reason);
  }

  /** Each hedge is reported once: won when it was the winner, lost otherwise. */
  private report(): void {
    for (let i = this.reported + 1; i < this.tries.length; i++) this.hedging.observer.hedge(this.ex, this.tries[i] === this.winner ? 'won' : 'lost');
    this.reported = this.tries.length - 1;
  }

  private finish(settle: () => void): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.report();
    if (this.ex.attempt === this) this.ex.attempt = undefined;
    settle();
  }
}

function hedgeLater(group: HedgeGroup): void {
  group.hedge();
}

// ---------------------------------------------------------------- calls (deliveries)

const DEFAULT_MAX_ANSWER_BYTES = 64 * 1024;

/** The upstream as a concern may use it: `call` takes the same path as proxied traffic. */
export function upstreamClient(upstream: UpstreamRuntime, deps: DispatchDeps): UpstreamClient {
  return {
    name: upstream.name,
    call: (call) => {
      const gate = upstream.gate;
      if (gate !== undefined) return gatedCall(gate, upstream, deps, call);
      return new Promise<UpstreamResult>((resolve) => new CallAttempt(upstream, deps, call, resolve, undefined).begin());
    },
  };
}

/** A call through the upstream's provider budget: admitted first, tried again while the budget absorbs throttles. */
async function gatedCall(gate: UpstreamGate, upstream: UpstreamRuntime, deps: DispatchDeps, call: UpstreamCall): Promise<UpstreamResult> {
  const deadlineAt = performance.now() + call.timeoutMs;
  const timeout = AbortSignal.timeout(call.timeoutMs);
  const signal = call.signal === undefined ? timeout : AbortSignal.any([call.signal, timeout]);
  let held: UpstreamResult | undefined;
  for (let resends = call.resends ?? 0; ; resends++) {
    const admitted = gate.admit({
      ex: undefined,
      method: call.method,
      header: (name) => findHeader(call.headers, name),
      body: call.body,
      priority: 'normal',
      deadlineAt,
      signal,
      resend: held !== undefined,
    });
    const ticket = admitted instanceof Promise ? await admitted : admitted;
    if (ticket === undefined || ticket instanceof GatehouseError) {
      if (held !== undefined) return held;
      const failure = ticket ?? new UpstreamError(timeout.aborted ? 'timeout' : 'aborted', `no admission by the budget of upstream '${upstream.name}' in time`);
      return { status: 0, headers: [], body: Buffer.alloc(0), failure, traceId: '' };
    }
    const timeoutMs = Math.max(1, Math.round(deadlineAt - performance.now()));
    const attempt = await new Promise<CallAttempt>((resolve) => {
      const a: CallAttempt = new CallAttempt(upstream, deps, { ...call, timeoutMs, resends }, () => resolve(a), ticket);
      a.begin();
    });
    if (!attempt.absorbed) return attempt.result!;
    held = attempt.result;
  }
}

class CallAttempt extends Attempt {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined = undefined;
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private readonly maxBytes: number;
  private readonly onAbort: () => void;
  /** Bytes of the answer received, kept or not. */
  private received = 0;
  /** The budget absorbed the answer (a provider throttle): the caller admits the call again. */
  absorbed = false;
  result: UpstreamResult | undefined = undefined;

  constructor(
    upstream: UpstreamRuntime,
    deps: DispatchDeps,
    private readonly call: UpstreamCall,
    private readonly resolve: (r: UpstreamResult) => void,
    ticket: Ticket | undefined,
  ) {
    super(upstream, deps, undefined, (call.resends ?? 0) > 0);
    this.maxBytes = call.maxBodyBytes ?? DEFAULT_MAX_ANSWER_BYTES;
    this.onAbort = () => this.abort(call.signal!.reason as Error);
    this.ticket = ticket;
  }

  begin(): void {
    const { call } = this;
    if (call.signal?.aborted) {
      this.ticket?.fail(false, false);
      this.ticket = undefined;
      return this.refused(toUpstreamError(call.signal.reason as Error, undefined));
    }
    this.timer = setTimeout(() => this.abort(new UpstreamError('timeout', `no answer from upstream '${this.upstream.name}' within ${call.timeoutMs}ms`)), call.timeoutMs);
    call.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.start();
  }

  protected signal(): AbortSignal {
    return this.controller.signal;
  }

  protected routeName(): string {
    return this.call.route;
  }

  protected method(): string {
    return this.call.method;
  }

  protected outgoing(ep: Endpoint, credential: string | undefined): Outgoing {
    const { call } = this;
    const headers = [...call.headers, 'host', call.host ?? ep.authority];
    if (credential !== undefined) headers.push(this.upstream.credentials!.header, credential);
    return { method: call.method, path: ep.basePath + call.target, headers, body: call.body };
  }

  protected startSpan(tracing: Tracing, ep: Endpoint, path: string): Span {
    return startCallSpan(tracing, this.call, this.upstream.name, ep, path);
  }

  override abort(reason: Error): void {
    this.controller.abort(reason);
    super.abort(reason);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    if (statusCode < 200) return true;
    this.statusCode = statusCode;
    this.rawHeaders = rawHeaders;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.received += chunk.length;
    if (this.kept < this.maxBytes) {
      const part = chunk.length <= this.maxBytes - this.kept ? chunk : chunk.subarray(0, this.maxBytes - this.kept);
      this.chunks.push(part);
      this.kept += part.length;
    }
    return true;
  }

  onComplete(): void {
    const ticket = this.ticket;
    if (ticket !== undefined) {
      this.ticket = undefined;
      // a call keeps its answer anyway: the budget reads it whole, or not at all when it was cut
      const whole = this.received === this.kept && ticket.inspect(this.statusCode, this.rawHeaders) >= this.kept;
      this.absorbed = ticket.answer(this.statusCode, this.rawHeaders, whole ? this.body() : undefined, whole);
    }
    this.settle(undefined);
    this.end(undefined);
  }

  private body(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.kept);
  }

  protected refused(err: Error): void {
    this.end(err);
  }

  protected failed(err: Error): void {
    this.end(err);
  }

  private end(failure: Error | undefined): void {
    clearTimeout(this.timer);
    this.call.signal?.removeEventListener('abort', this.onAbort);
    this.result = {
      status: failure === undefined ? this.statusCode : 0,
      headers: this.rawHeaders.map((b) => b.toString('latin1')),
      body: this.body(),
      failure: failure as GatehouseError | UpstreamError | undefined,
      traceId: this.span?.spanContext().traceId ?? '',
    };
    this.resolve(this.result);
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

function toUpstreamError(err: Error, ex: Exchange | undefined): Error {
  if (ex?.cancelled) return new UpstreamError(ex.cancelled, err.message, { cause: err });
  return new UpstreamError(classifyFailure(err), err.message, { cause: err });
}
