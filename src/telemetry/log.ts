import type { Attributes } from '@opentelemetry/api';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Exchange } from '../core/exchange.js';
import type { LogLevel } from './otel-env.js';

/**
 * gatehouse's own log (SPEC §1): JSON lines on stderr, `"level":"info"` as a word, lines below
 * `level` never built (pino turns the methods of disabled levels into no-ops).
 */
export function createLogger(level: LogLevel, destination: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'gatehouse' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/**
 * The fields of a line written while a request is handled: its route, request id and trace:
 * `traceId` (of the SERVER span, or of the client's traceparent when tracing is off) and
 * `spanId` (of the SERVER span). Built only when a line is written.
 */
export function requestFields(ex: Exchange): Record<string, string> {
  const fields: Record<string, string> = { requestId: ex.requestId };
  if (ex.route !== undefined) fields.route = ex.route.name;
  if (ex.traceId !== '') fields.traceId = ex.traceId;
  const span = ex.span?.spanContext();
  if (span !== undefined) fields.spanId = span.spanId;
  return fields;
}

/** A request's policy decision (a span event: retry, breaker, quota, JWT) as a debug line. */
export type EventLog = (ex: Exchange, name: string, attributes: Attributes | undefined) => void;

/**
 * Debug lines for what policies decide, mirroring the SERVER span's events, so every decision is
 * visible without traces. undefined when the level is above debug: the level is read once, when
 * the plan is compiled, and a request then pays nothing.
 */
export function createEventLog(logger: Logger): EventLog | undefined {
  if (!logger.isLevelEnabled('debug')) return undefined;
  return (ex, name, attributes) => logger.debug({ ...requestFields(ex), event: name, ...attributes }, describeEvent(name));
}

/** `gatehouse.circuit_breaker.transition` -> `circuit breaker transition`. */
const describeEvent = (name: string) => name.replace(/^gatehouse\./, '').replace(/[._]/g, ' ');

/** The debug line of the route a request matched, or undefined when debug is off (decided once). */
export function createRouteLog(logger: Logger): ((ex: Exchange) => void) | undefined {
  if (!logger.isLevelEnabled('debug')) return undefined;
  return (ex) =>
    logger.debug({ ...requestFields(ex), method: ex.method, path: ex.path, httpRoute: ex.route?.httpRoute, upstream: ex.route?.upstream }, 'route chosen');
}
