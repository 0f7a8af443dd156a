import type { Attributes } from '@opentelemetry/api';
import type { GatehouseError, UpstreamError } from './errors.js';

/**
 * A request to an upstream that no client is waiting on: a webhook or outbox delivery, a
 * reconciliation page, a cache revalidation. It takes the same path as proxied traffic — the
 * upstream's breaker and bulkhead, its credentials and TLS, endpoint choice and ejection, its
 * metrics and a CLIENT span — only its answer is collected instead of streamed to a client.
 */
export interface UpstreamCall {
  /** The route it is made for: metrics, span and log attribute it there. */
  readonly route: string;
  readonly method: string;
  /** Path and query after the route's rewrite; the endpoint's own base path goes in front. */
  readonly target: string;
  /** Headers to send, flat: [name, value, ...]. Host, credentials and trace context are added. */
  readonly headers: readonly string[];
  readonly body: Buffer | null;
  /** `rewrite.host`: the Host to send; undefined = the endpoint's authority. */
  readonly host?: string | undefined;
  /** Bounds the whole attempt, answer body included. */
  readonly timeoutMs: number;
  /** Aborts the attempt (shutdown). */
  readonly signal?: AbortSignal | undefined;
  /** Tries made before this one: `http.request.resend_count` on the span. */
  readonly resends?: number;
  /** The CLIENT span is a root linked to this trace context (a traceparent), e.g. the intake's. */
  readonly link?: string | undefined;
  /** Extra attributes for the CLIENT span (a delivery's ids). */
  readonly attributes?: Attributes;
  /** The longest answer body kept (default 64 KiB); the rest is read and dropped. */
  readonly maxBodyBytes?: number;
}

/** What came of a call: the answer, or why there is none. */
export interface UpstreamResult {
  /** The answer's status; 0 when there is no answer. */
  readonly status: number;
  /** Response headers, flat: [name, value, ...] as sent. */
  readonly headers: readonly string[];
  /** The answer body, cut at `maxBodyBytes`. */
  readonly body: Buffer;
  /**
   * Why there is no answer: a GatehouseError when gatehouse refused to send (`circuit_open`,
   * `overloaded`, `no_healthy_upstream`, `auth_unavailable`), an UpstreamError when the attempt
   * failed without one (`connect-failure`, `timeout`, ...); undefined with an answer.
   */
  readonly failure: GatehouseError | UpstreamError | undefined;
  /** The trace of the attempt's CLIENT span ('' when tracing is off or nothing was sent). */
  readonly traceId: string;
}

/** One upstream, as a concern may use it. `call` never rejects: a failure is a result too. */
export interface UpstreamClient {
  readonly name: string;
  call(call: UpstreamCall): Promise<UpstreamResult>;
}
