import type { GatehouseError } from './errors.js';
import type { Exchange } from './exchange.js';
import type { Priority } from './wait-queue.js';

/**
 * What the upstream dispatch asks of a provider budget (SPEC §12), when an upstream has one: an
 * admission before each attempt is sent, and the attempt's answer (or its failure) afterwards.
 * The budget concern (src/budget/) implements it; the dispatch knows nothing of Shopify or Stripe.
 * An upstream without `budget` or `concurrency` has no gate, and its attempts pay nothing.
 */
export interface UpstreamGate {
  /**
   * Admits one attempt: a Ticket now or after a wait (in priority order), a GatehouseError when
   * it may not go (`rate_limited`, `overloaded`), or undefined when the request was cancelled
   * (client gone, route deadline) while it waited.
   */
  admit(request: GateRequest): Ticket | GatehouseError | Promise<Ticket | GatehouseError | undefined>;
}

/** The attempt about to be admitted. */
export interface GateRequest {
  /** The client exchange; undefined for a call no client waits on (a delivery). */
  readonly ex: Exchange | undefined;
  readonly method: string;
  /** A request header's first value, by lowercase name. */
  header(lowerName: string): string | undefined;
  /** The request body when it is held whole (read before sending, or kept for retries); else null. */
  readonly body: Buffer | null;
  readonly priority: Priority;
  /** Clock.monotonic() by which the answer must have arrived (the route deadline). */
  readonly deadlineAt: number;
  /** Aborts a wait (client gone, deadline). */
  readonly signal: AbortSignal | undefined;
  /** This admission re-sends an answer the ticket absorbed (a provider throttle gatehouse retries). */
  readonly resend: boolean;
}

/** One admitted attempt. Exactly one of `answer` and `fail` is called, once. */
export interface Ticket {
  /**
   * The answer's status line and headers arrived: how many bytes of its body to hold back before
   * anything reaches the client, so `answer` can read them (0: stream it at once). An answer
   * longer than that streams on, and `answer` gets its last bytes instead.
   */
  inspect(statusCode: number, rawHeaders: readonly Buffer[]): number;
  /**
   * The whole answer is in. `body` is the held body (`whole`), or the last bytes of an answer that
   * streamed (`!whole`), or undefined when nothing was held. Returns true when the answer is a
   * provider throttle that gatehouse absorbs: it is discarded (never sent to the client) and the
   * request is admitted again, once the budget can afford it.
   */
  answer(statusCode: number, rawHeaders: readonly Buffer[], body: Buffer | undefined, whole: boolean): boolean;
  /** No answer: refused after admission (`sent` false), or failed after it was sent. */
  fail(sent: boolean, timeout: boolean): void;
}
