import { diag, DiagLogLevel, type DiagLogger } from '@opentelemetry/api';
import { loggingErrorHandler, setGlobalErrorHandler } from '@opentelemetry/core';
import type { Logger } from 'pino';

/** A message repeats in the log at most once in this long; the next line says how many were left out. */
export const QUIET_MS = 60_000;

/**
 * The OpenTelemetry SDK's own messages in gatehouse's log, at `warn`: its `diag` warnings and
 * errors (a bad OTEL_EXPORTER_OTLP_TIMEOUT, a full span queue) and the export failures it hands
 * its global error handler (the collector down, refusing, or too slow). Each kind of message is
 * logged once a minute at most, with the count of those left out, so a collector that is down
 * for an hour writes 60 lines, not one per batch. Exports run in the background, batched: a
 * failing collector costs requests nothing.
 *
 * Both hooks are process-wide (the OpenTelemetry API keeps them globally); the returned function
 * puts the SDK's defaults back, at shutdown.
 */
export function bridgeOtelDiagnostics(logger: Logger, nowMs: () => number): () => void {
  const allow = createRepeatLimiter(QUIET_MS, nowMs);
  const write = (kind: string, message: string, extra?: Record<string, unknown>) => {
    const suppressed = allow(kind === 'export' ? kind : message);
    if (suppressed === undefined) return;
    logger.warn({ otel: kind, ...extra, ...(suppressed > 0 ? { suppressed } : {}) }, message);
  };
  const format = (message: string, args: unknown[]) => [message, ...args.map(describe)].filter((s) => s !== '').join(' ');
  const bridge: DiagLogger = {
    error: (message, ...args) => write('diag', format(message, args)),
    warn: (message, ...args) => write('diag', format(message, args)),
    info: () => {},
    debug: () => {},
    verbose: () => {},
  };
  diag.setLogger(bridge, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  setGlobalErrorHandler((ex) => {
    const code = typeof ex === 'object' && 'code' in ex ? ex.code : undefined;
    write('export', 'OpenTelemetry export failed (is the collector up?)', { err: describe(ex), ...(code !== undefined ? { code } : {}) });
  });
  return () => {
    diag.disable();
    setGlobalErrorHandler(loggingErrorHandler());
  };
}

/**
 * For each key: undefined while it was seen less than `windowMs` ago, else the number of times
 * it was left out since its last line. Keys live one window, so the map stays small.
 */
export function createRepeatLimiter(windowMs: number, nowMs: () => number): (key: string) => number | undefined {
  const seen = new Map<string, { at: number; suppressed: number }>();
  return (key) => {
    const now = nowMs();
    const last = seen.get(key);
    if (last !== undefined && now - last.at < windowMs) {
      last.suppressed++;
      return undefined;
    }
    for (const [k, v] of seen) if (now - v.at >= windowMs) seen.delete(k);
    seen.set(key, { at: now, suppressed: 0 });
    return last?.suppressed ?? 0;
  };
}

function describe(v: unknown): string {
  if (v instanceof Error) return v.message;
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) return '';
  if (typeof v === 'object' && 'message' in v && typeof v.message === 'string') return v.message;
  try {
    return JSON.stringify(v);
  } catch {
    return typeof v;
  }
}
