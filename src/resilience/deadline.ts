import type { Clock } from '../core/clock.js';
import type { Exchange } from '../core/exchange.js';
import { type Policy } from '../core/send.js';
import { UpstreamError } from '../core/errors.js';

/**
 * The route `timeout`: one deadline for everything before the upstream's response headers reach
 * the client — every attempt, back-off and Retry-After wait. When it passes, whatever is in
 * flight is cancelled and the client gets 504 `upstream_timeout`. Once headers are committed the
 * body streams on (the attempt clears the timer), so a long download is never cut by it.
 */
export function deadline(timeoutMs: number, clock: Clock): Policy {
  return (next) =>
    async function withDeadline(ex: Exchange) {
      // the same clock the retry policy compares its waits against
      ex.deadlineAt = clock.monotonic() + timeoutMs;
      ex.deadlineTimer = setTimeout(expire, timeoutMs, ex, timeoutMs);
      try {
        return await next(ex);
      } finally {
        if (ex.deadlineTimer !== undefined) {
          clearTimeout(ex.deadlineTimer);
          ex.deadlineTimer = undefined;
        }
      }
    };
}

function expire(ex: Exchange, timeoutMs: number): void {
  ex.deadlineTimer = undefined;
  ex.cancel('timeout', new UpstreamError('timeout', `no answer from the upstream within the route timeout of ${timeoutMs}ms`));
}
