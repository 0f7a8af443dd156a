/**
 * Durations and sizes as written in the YAML file: a number with a unit, never a bare number,
 * so `timeout: 5` cannot silently mean 5 ms.
 */

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

const SIZE = /^(\d+(?:\.\d+)?)(b|kb|mb|gb)$/i;
const SIZE_BYTES: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** `250ms`, `2s`, `1m`, `1h` -> milliseconds; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_MS[m[2]!]!);
}

/** `512b`, `64kb`, `10mb`, `1gb` (binary multiples) -> bytes; undefined when not a size. */
export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_BYTES[m[2]!.toLowerCase()]!);
}
