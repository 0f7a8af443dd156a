import type { RetryConfig } from '../config/schema.js';
import type { Exchange, ResponseFilter } from '../core/exchange.js';
import { type AttemptResult, type Policy, type Send } from '../core/send.js';
import { UpstreamError, type FailureKind } from '../core/errors.js';
import { parseRateLimitField, parseResetSeconds, parseRetryAfter, scanLimitHeaders } from '../core/limit-headers.js';
import { backoffDelayMs } from '../core/backoff.js';
import type { Clock } from '../core/clock.js';
import { readReplayableBody } from './replay-body.js';
import { retryBudgetAllows, type RetryLoad } from './retry-budget.js';
import { createTimeoutQueue, type TimeoutQueue } from './timeout-queue.js';

/**
 * Retries (SPEC §3, §6). The decision is a pure run of guard clauses, as in undici's retry
 * handler — condition, attempts left, budget, wait, deadline — over plain numbers; the policy
 * around it owns the timers, the replay body and the budget counters.
 *
 * Safety rules the policy keeps: only idempotent methods or requests with an Idempotency-Key;
 * never once a response byte went to the client (the attempt commits, and a committed answer is
 * final); every wait inside the route deadline; an upstream answer that is not retried (its
 * Retry-After too long, budget spent, attempts exhausted) goes to the client unchanged.
 */

export interface RetryPlan {
  readonly attempts: number;
  /** 1 at each status code to retry (index = status). */
  readonly statuses: Uint8Array;
  readonly failures: ReadonlySet<FailureKind>;
  readonly baseMs: number;
  readonly maxMs: number;
  readonly perTryTimeoutMs: number | undefined;
  readonly respectRetryAfter: boolean;
  readonly budget: number;
  readonly maxBodyBytes: number;
}

export function compileRetry(cfg: RetryConfig): RetryPlan {
  const statuses = new Uint8Array(600);
  const failures = new Set<FailureKind>();
  for (const c of cfg.on) {
    if (typeof c === 'number' || /^\d+$/.test(c)) statuses[Number(c)] = 1;
    else if (/^[1-5]xx$/i.test(c)) statuses.fill(1, Number(c[0]) * 100, Number(c[0]) * 100 + 100);
    else failures.add(c as FailureKind);
  }
  return {
    attempts: cfg.attempts,
    statuses,
    failures,
    baseMs: cfg.backoff.base,
    maxMs: cfg.backoff.max,
    perTryTimeoutMs: cfg.perTryTimeout,
    respectRetryAfter: cfg.respectRetryAfter,
    budget: cfg.budget,
    maxBodyBytes: cfg.maxBodySize,
  };
}

// ---------------------------------------------------------------- the decision (pure)

export interface RetryInput {
  /** What ended the attempt: the upstream's status code, or how it failed. */
  readonly cause: number | FailureKind;
  /** Tries made so far, the one that just ended included. */
  readonly attempt: number;
  /** The wait the upstream asked for (Retry-After, RateLimit), if any and if honoured. */
  readonly hintMs: number | undefined;
  readonly nowMs: number;
  /** Monotonic time by which the upstream's headers must have arrived (the route timeout). */
  readonly deadlineAt: number;
  readonly retriesInFlight: number;
  /** First tries in flight to the upstream (the budget's base). */
  readonly requestsInFlight: number;
}

export type RetrySkip = 'condition' | 'attempts' | 'budget' | 'deadline';
export type RetryDecision = { readonly retry: false; readonly reason: RetrySkip } | { readonly retry: true; readonly delayMs: number };

const SKIP: { readonly [K in RetrySkip]: RetryDecision } = {
  condition: { retry: false, reason: 'condition' },
  attempts: { retry: false, reason: 'attempts' },
  budget: { retry: false, reason: 'budget' },
  deadline: { retry: false, reason: 'deadline' },
};

export function decideRetry(plan: RetryPlan, input: RetryInput, rand: () => number): RetryDecision {
  const { cause } = input;
  if (typeof cause === 'number' ? plan.statuses[cause] !== 1 : !plan.failures.has(cause)) return SKIP.condition;
  if (input.attempt >= plan.attempts) return SKIP.attempts;
  if (!retryBudgetAllows(input.retriesInFlight, input.requestsInFlight, plan.budget)) return SKIP.budget;
  // The upstream's own hint beats our guess; it is never shortened to fit the deadline — an
  // answer that says "come back in 30 s" is passed on rather than retried early.
  const delayMs = input.hintMs ?? backoffDelayMs(plan.baseMs, plan.maxMs, rand, input.attempt);
  if (input.nowMs + delayMs >= input.deadlineAt) return SKIP.deadline;
  return { retry: true, delayMs };
}

/**
 * How long the upstream asks to wait, from its response headers: `Retry-After` (seconds or an
 * HTTP-date), else the IETF `RateLimit` field (`"q";r=0;t=10`: the longest `t` of a spent
 * member), else `X-RateLimit-Reset` / `RateLimit-Reset` with remaining 0 (seconds, or a Unix
 * time as GitHub sends). undefined when none says anything usable. The headers are read by
 * quota/upstream-limits.ts, which also pauses upstreams that announce a limit.
 */
export function retryHintMs(raw: readonly (Buffer | string)[], wallNowMs: number): number | undefined {
  const h = scanLimitHeaders(raw);
  const retryAfter = parseRetryAfter(h.retryAfter, wallNowMs);
  if (retryAfter !== undefined) return retryAfter;
  const rateLimit = h.rateLimit === undefined ? undefined : parseRateLimitField(h.rateLimit, wallNowMs);
  if (rateLimit !== undefined) return rateLimit;
  // a reset counts when nothing remains, or when the answer does not say what remains
  const remaining = h.xRemaining ?? h.remaining;
  if (remaining !== undefined && remaining !== '0') return undefined;
  return parseResetSeconds(h.xReset ?? h.reset, wallNowMs);
}

// ---------------------------------------------------------------- the policy

/** Told about each retry and each retry that was wanted but not made; telemetry implements it. */
export interface RetryObserver {
  /** A retry was granted: `reason` is the status code or failure kind, `delayMs` the wait before it. */
  retry(ex: Exchange, reason: string, delayMs: number): void;
  /** A retryable answer or failure was passed on instead: the budget or the deadline said no. */
  retrySkipped(ex: Exchange, reason: string, why: RetrySkip): void;
}

export interface RetryDeps {
  readonly clock: Clock;
  readonly rand: () => number;
  readonly observer: RetryObserver;
  /** The upstream's counters, shared by every route to it. */
  readonly load: RetryLoad;
  /** The route has `idempotencyKey: generate`: every POST and PATCH carries a key. */
  readonly generatesIdempotencyKey: boolean;
}

/**
 * The retry policy; with `attempts: 1` only the per-try timeout is left (or no policy at all,
 * Traefik's rule: no wrapper where it would do nothing).
 */
export function retry(plan: RetryPlan, deps: RetryDeps): Policy | undefined {
  const { clock, rand, observer, load } = deps;
  const tryTimeouts = plan.perTryTimeoutMs === undefined ? undefined : perTryTimeouts(plan.perTryTimeoutMs);
  const perTry = tryTimeouts === undefined ? undefined : perTryTimeout(tryTimeouts);
  if (plan.attempts === 1) return perTry;

  // Compiled once per route; per-request state lives on the exchange.
  const claim: ResponseFilter = (ex, statusCode, rawHeaders) => {
    if (plan.statuses[statusCode] !== 1) return false;
    const hintMs = plan.respectRetryAfter ? retryHintMs(rawHeaders, clock.now()) : undefined;
    const d = decideRetry(
      plan,
      { cause: statusCode, attempt: ex.attempts, hintMs, nowMs: clock.monotonic(), deadlineAt: ex.deadlineAt, retriesInFlight: load.retriesInFlight, requestsInFlight: load.inFlight - load.retryAttemptsInFlight },
      rand,
    );
    if (!d.retry) {
      if (d.reason !== 'attempts') observer.retrySkipped(ex, String(statusCode), d.reason);
      return false;
    }
    load.retriesInFlight++;
    ex.retryDelayMs = d.delayMs;
    return true;
  };

  return (next) => {
    const once = perTry === undefined ? next : perTry(next);
    return function withRetry(ex: Exchange): Promise<AttemptResult> {
      if (!isReplayable(ex, deps.generatesIdempotencyKey)) return once(ex);
      const body = ex.body;
      if (body === null) return retryLoop(ex, next);
      // a body the listener read whole (limits.bufferBodies) is replayed only up to retry.maxBodySize too
      if (Buffer.isBuffer(body)) return body.length <= plan.maxBodyBytes ? retryLoop(ex, next) : once(ex);
      const length = ex.header('content-length');
      if (length !== undefined && Number(length) > plan.maxBodyBytes) return once(ex); // too large to keep: sent once
      return readReplayableBody(body, plan.maxBodyBytes, ex.signal).then((kept) => {
        ex.body = kept;
        return Buffer.isBuffer(kept) ? retryLoop(ex, next) : once(ex);
      });
    };
  };

  /** The tries; each under its perTryTimeout, kept here rather than in one more wrapper per try. */
  async function retryLoop(ex: Exchange, next: Send): Promise<AttemptResult> {
    let holdsSlot = false; // this attempt is a retry counted in the budget
    try {
      for (let tries = 1; ; tries++) {
        ex.retryable = tries >= plan.attempts ? undefined : claim;
        ex.retryDelayMs = -1;
        let reason: string;
        const timeout = tryTimeouts?.add(ex);
        try {
          const result = await next(ex);
          // not claimed by `claim` (it sets the delay): held back for the outbox's fallback
          if (result.committed || ex.retryDelayMs < 0) return result;
          reason = String(result.statusCode); // claimed: `claim` granted the retry and took a slot
        } catch (err) {
          if (ex.retryDelayMs < 0) {
            // a failure without an answer: retry only what `on` lists, and never a cancelled exchange
            if (!(err instanceof UpstreamError) || ex.cancelled !== undefined || tries >= plan.attempts) throw err;
            const d = decideRetry(
              plan,
              { cause: err.kind, attempt: tries, hintMs: undefined, nowMs: clock.monotonic(), deadlineAt: ex.deadlineAt, retriesInFlight: load.retriesInFlight, requestsInFlight: load.inFlight - load.retryAttemptsInFlight },
              rand,
            );
            if (!d.retry) {
              if (d.reason !== 'condition') observer.retrySkipped(ex, err.kind, d.reason);
              throw err;
            }
            load.retriesInFlight++;
            ex.retryDelayMs = d.delayMs;
          } else if (ex.cancelled !== undefined) {
            load.retriesInFlight--; // claimed (a slot was taken), then the deadline or the client ended it while draining
            throw err;
          }
          reason = err instanceof UpstreamError ? err.kind : 'error';
        } finally {
          if (timeout !== undefined) tryTimeouts!.cancel(timeout);
        }
        // the attempt that just ended no longer counts; the one granted now does (slot taken above)
        if (holdsSlot) load.retriesInFlight--;
        holdsSlot = true;
        const delayMs = ex.retryDelayMs;
        observer.retry(ex, reason, delayMs);
        if (delayMs > 0) await clock.sleep(delayMs, ex.signal);
      }
    } finally {
      ex.retryable = undefined;
      if (holdsSlot) load.retriesInFlight--;
    }
  }
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** SPEC §3: idempotent methods, or a request carrying an Idempotency-Key (its own or generated). */
function isReplayable(ex: Exchange, generatesKey: boolean): boolean {
  if (IDEMPOTENT.has(ex.method)) return true;
  if (generatesKey && (ex.method === 'POST' || ex.method === 'PATCH')) return true;
  return ex.header('idempotency-key') !== undefined;
}

/**
 * `retry.perTryTimeout`: cuts one attempt that has no response headers yet. Once headers went
 * to the client the body streams on, as with the route timeout. One queue per route: its tries
 * all have the same timeout, so no timer is created per attempt.
 */
const perTryTimeouts = (timeoutMs: number) => createTimeoutQueue<Exchange>(timeoutMs, (ex) => expireTry(ex, timeoutMs));

/** The per-try timeout alone, for requests that are sent once. */
function perTryTimeout(timeouts: TimeoutQueue<Exchange>): Policy {
  return (next) =>
    async function withTryTimeout(ex: Exchange) {
      const entry = timeouts.add(ex);
      try {
        return await next(ex);
      } finally {
        timeouts.cancel(entry);
      }
    };
}

function expireTry(ex: Exchange, timeoutMs: number): void {
  if (ex.res.headersSent) return;
  ex.attempt?.abort(new UpstreamError('timeout', `no answer from the upstream within the perTryTimeout of ${timeoutMs}ms`));
}
