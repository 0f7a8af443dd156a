import type { Exchange } from './exchange.js';

/**
 * The contract between the proxy and the resilience policies (undici's interceptor shape):
 * `attempt` is the innermost Send, and each Policy wraps the one inside it. A leaf module.
 */

/** How an upstream exchange failed without a usable answer; the names of `retry.on`. */
export type FailureKind = 'connect-failure' | 'reset' | 'timeout' | 'invalid-response' | 'tls' | 'aborted';

export class UpstreamError extends Error {
  readonly kind: FailureKind;

  constructor(kind: FailureKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamError';
    this.kind = kind;
  }
}

/** A TLS failure's code (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_TLS_CERT_ALTNAME_INVALID`, ...): no peer data. */
export function tlsReason(err: UpstreamError): string {
  const code = (err.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'handshake failed';
}

export interface AttemptResult {
  readonly statusCode: number;
  /** The upstream's response headers as undici gives them: [name, value, name, value, ...]. */
  readonly rawHeaders: readonly Buffer[];
  /**
   * true: the answer went to the client (headers at least). false: it was discarded because
   * `ex.retryable` asked for another try; nothing was sent to the client.
   */
  readonly committed: boolean;
}

export type Send = (ex: Exchange) => Promise<AttemptResult>;
export type Policy = (next: Send) => Send;

/** Composes policies so that the first is outermost: `compose([a, b], send)` = a(b(send)). */
export function compose(policies: readonly Policy[], inner: Send): Send {
  let send = inner;
  for (let i = policies.length - 1; i >= 0; i--) {
    const policy = policies[i]!;
    send = policy(send);
    if (typeof send !== 'function') throw new TypeError(`policy ${i} did not return a Send function`);
  }
  return send;
}
