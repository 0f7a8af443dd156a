import { isIP } from 'node:net';
import { MAX_REFERENCED_BYTES, readBoundedFile } from './read.js';

/*
 * The config's values that serving code needs too, without the schema: the serving thread does
 * not load zod and yaml (the config is read in a worker thread), about 10 MB of memory.
 */

/**
 * PEM material: inline (`-----BEGIN ...`, typically from `${file:}` or `${env:}`) or a file path
 * (relative to the working directory). Checked after parsing (`files.ts`) so `gatehouse validate`
 * reports an unreadable or unparsable file at its position; read again at runtime (rotation).
 * A path must name a regular file of at most 1 MB (SPEC §3.1).
 */
export function readPem(source: string): string {
  return source.trimStart().startsWith('-----BEGIN') ? source : readBoundedFile(source, MAX_REFERENCED_BYTES);
}

/** A host name or IP literal on this machine's loopback. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/** OTLP encodings (OTEL_EXPORTER_OTLP_PROTOCOL): the specification's default is http/protobuf. */
export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'] as const;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
