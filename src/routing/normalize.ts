/**
 * The path that routes match and the upstream receives (SPEC §2): percent-encoding of
 * unreserved characters decoded (RFC 3986 §6.2.2.2), other escapes upper-cased, then dot
 * segments removed (§5.2.4). `/api/../admin` and `/%61dmin` become `/admin` before any route
 * sees them, so no prefix can be bypassed. Returns undefined for a path that is not one.
 *
 * Encoded slashes (`%2F`) and backslashes (`%5C`) are data, not separators: they are kept
 * encoded and never split a segment for matching (RFC 3986; what Envoy does by default). Many
 * upstreams decode them and resolve dots afterwards, so a path where a `.` or `..` segment
 * appears only once `%2F`, `%5C` or `\` count as separators (`/api/..%2Fadmin`) is refused:
 * the prefix it matched here would not be the path the upstream serves.
 */
export function normalizePath(path: string): string | undefined {
  if (path.charCodeAt(0) !== 47 /* / */) return undefined;
  // Fast path: nothing to decode and no dot segment.
  if (!path.includes('%') && !path.includes('/.') && !path.includes('\\')) return path;

  let decoded = path;
  if (path.includes('%')) {
    decoded = '';
    for (let i = 0; i < path.length; i++) {
      const c = path[i]!;
      if (c !== '%') {
        decoded += c;
        continue;
      }
      const hex = path.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      const code = parseInt(hex, 16);
      decoded += isUnreserved(code) ? String.fromCharCode(code) : `%${hex.toUpperCase()}`;
      i += 2;
    }
  }
  const normalized = removeDotSegments(decoded);
  return hasHiddenDotSegment(normalized) ? undefined : normalized;
}

const ALT_SEPARATOR = /\\|%2F|%5C/;
const ANY_SEPARATOR = /\/|\\|%2F|%5C/;

/** A `.`/`..` segment that appears when encoded slashes or backslashes are read as separators. */
function hasHiddenDotSegment(path: string): boolean {
  if (!ALT_SEPARATOR.test(path)) return false;
  return path.split(ANY_SEPARATOR).some((s) => s === '.' || s === '..');
}

function isUnreserved(code: number): boolean {
  return (
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e // - . _ ~
  );
}

/** RFC 3986 §5.2.4 on an absolute path: `.` and `..` segments resolved, never above the root. */
export function removeDotSegments(path: string): string {
  const segments = path.split('/');
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..') out.pop();
      if (last) out.push(''); // `/a/b/..` -> `/a/`
      continue;
    }
    out.push(s);
  }
  return '/' + out.join('/');
}
