import type { Exchange } from './exchange.js';

/**
 * The contract between the proxy and the resilience policies (undici's interceptor shape):
 * `attempt` is the innermost Send, and each Policy wraps the one inside it. A leaf module.
 */

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
