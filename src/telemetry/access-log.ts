import type { DestinationStream } from 'pino';
import { systemClock, type Clock } from '../core/clock.js';

/**
 * One JSON line per request (SPEC §8). Never headers: no Authorization, no cookies. Every key is
 * always present (null when it does not apply), so log pipelines see one fixed shape.
 */
export interface AccessLogEntry {
  readonly route: string | null;
  readonly method: string;
  readonly path: string;
  /** What the client got; null on a background line whose upstream did not answer. */
  readonly status: number | null;
  readonly durationMs: number;
  readonly upstream: string | null;
  readonly attempts: number;
  /** Why a retry the route's policy wanted was not made: `budget` or `deadline`; null when none was skipped. */
  readonly retrySkipped: string | null;
  readonly traceId: string | null;
  readonly requestId: string;
  /** The SPEC §4 code when gatehouse answered itself or the upstream failed. */
  readonly error: string | null;
  /** The client address; null on background lines (no client). */
  readonly client: string | null;
  /** Set on the lines of background work that no client request carries (webhook and outbox deliveries). */
  readonly kind?: 'webhook-delivery' | 'outbox-delivery' | 'outbox-callback';
  readonly webhookId?: string;
  readonly outboxId?: string;
  readonly eventId?: string;
  /** A webhook delivery's destination (`upstream` for a route without `destinations`). */
  readonly destination?: string;
  readonly result?: string;
}

export type AccessLog = ((entry: AccessLogEntry) => void) & {
  /** Hands the lines not written yet to the destination (they are batched for up to `flushMs`). */
  readonly flush: () => void;
};

export const noAccessLog: AccessLog = Object.assign(() => {}, { flush: () => {} });

/** Above this many characters pending, the batch is written at once instead of waiting. */
const BATCH_CHARS = 16 * 1024;
/** The longest a line waits before it is written, by default. */
const FLUSH_MS = 20;

/**
 * Lines go to a pino destination (sonic-boom: non-blocking, flushed at shutdown). Lines are joined
 * and written at most every `flushMs`, or at once when BATCH_CHARS are pending: a write per request
 * cost about 6% of a proxied request's CPU under load (sonic-boom measures its whole pending buffer
 * on every write), and more at one connection, where every request woke a thread-pool write.
 */
export function createAccessLog(destination: DestinationStream, flushMs = FLUSH_MS, clock: Pick<Clock, 'now'> = systemClock): AccessLog {
  let pending = '';
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending === '') return;
    const batch = pending;
    pending = '';
    destination.write(batch);
  };
  let timeMs = 0;
  let time = '';
  const log = (entry: AccessLogEntry) => {
    const now = clock.now();
    if (now !== timeMs) {
      timeMs = now;
      time = new Date(now).toISOString(); // once per millisecond, not per line: it costs more than the rest of the line
    }
    pending += formatAccessLine(entry, time);
    if (pending.length >= BATCH_CHARS) flush();
    else if (!scheduled) {
      scheduled = true;
      if (flushMs === 0) setImmediate(flush);
      else setTimeout(flush, flushMs).unref();
    }
  };
  return Object.assign(log, { flush });
}

/**
 * The entry as one JSON line, every key in a fixed order: what `JSON.stringify({ time, ...entry })`
 * gives, written out because this runs for every request.
 */
export function formatAccessLine(e: AccessLogEntry, time: string): string {
  // Background lines (webhook deliveries) carry more keys; they are rare, the generic way is fine.
  if (e.kind !== undefined) return `{"time":"${time}",${JSON.stringify(e).slice(1)}\n`;
  return (
    `{"time":"${time}","route":${orNull(e.route)},"method":${jsonString(e.method)},"path":${jsonString(e.path)},` +
    `"status":${e.status},"durationMs":${e.durationMs},"upstream":${orNull(e.upstream)},"attempts":${e.attempts},` +
    `"retrySkipped":${orNull(e.retrySkipped)},"traceId":${orNull(e.traceId)},"requestId":${jsonString(e.requestId)},"error":${orNull(e.error)},"client":${orNull(e.client)}}\n`
  );
}

const orNull = (s: string | null) => (s === null ? 'null' : jsonString(s));

/** A JSON string literal; plain strings (the usual path, id or name) skip JSON.stringify. */
function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s);
  }
  return `"${s}"`;
}
