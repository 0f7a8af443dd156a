import type { DestinationStream } from 'pino';

/**
 * One JSON line per request (SPEC §8). Never headers: no Authorization, no cookies. Every key is
 * always present (null when it does not apply), so log pipelines see one fixed shape.
 */
export interface AccessLogEntry {
  readonly route: string | null;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly durationMs: number;
  readonly upstream: string | null;
  readonly attempts: number;
  readonly traceId: string | null;
  readonly requestId: string;
  /** The SPEC §4 code when gatehouse answered itself or the upstream failed. */
  readonly error: string | null;
  readonly client: string;
  /** Set on the lines of background work that no client request carries (webhook deliveries). */
  readonly kind?: 'webhook-delivery';
  readonly webhookId?: string;
  readonly eventId?: string;
  readonly result?: string;
}

export type AccessLog = (entry: AccessLogEntry) => void;

export const noAccessLog: AccessLog = () => {};

/**
 * Lines go to a pino destination (sonic-boom: buffered, non-blocking, flushed at shutdown). The
 * entry is flat and its keys fixed, so JSON.stringify is all the formatting it needs.
 */
export function createAccessLog(destination: DestinationStream): AccessLog {
  return (entry) => {
    destination.write(`{"time":"${new Date().toISOString()}",${JSON.stringify(entry).slice(1)}\n`);
  };
}
