import type { DestinationStream } from 'pino';

/** One JSON line per request (SPEC §8). Never headers: no Authorization, no cookies. */
export interface AccessLogEntry {
  readonly route: string | undefined;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly durationMs: number;
  readonly upstream: string | undefined;
  readonly attempts: number;
  readonly traceId: string | undefined;
  readonly requestId: string;
  readonly error: string | undefined;
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
