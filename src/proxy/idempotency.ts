import { randomUUID } from 'node:crypto';
import { findHeader } from '../core/headers.js';
import type { Policy } from '../core/send.js';

/**
 * `idempotencyKey: generate`: a POST or PATCH without an `Idempotency-Key` gets a fresh UUID v4
 * key, added once before the first attempt so every retry of that request carries the same key
 * (a retried payment is then not charged twice). A key the client sent is never replaced.
 */
export function idempotencyKey(generate: () => string = randomUUID): Policy {
  return (next) =>
    function withIdempotencyKey(ex) {
      // the client's key is among the headers forwarded (unless the route removes it); the outbox may have added one
      if ((ex.method === 'POST' || ex.method === 'PATCH') && findHeader(ex.outHeaders, 'idempotency-key') === undefined) {
        // part of the base headers every attempt starts from
        ex.outHeaders.length = ex.outHeaderBase;
        ex.outHeaders.push('idempotency-key', generate());
        ex.outHeaderBase = ex.outHeaders.length;
      }
      return next(ex);
    };
}
