/**
 * The path that routes match and the upstream receives (SPEC §2, §3.1). One rule makes route
 * protection hold: the path gatehouse matches is the path it forwards, and it is already in the
 * form a WHATWG URL parser (what Express, Fastify, undici and browsers use) reads it in, so no
 * upstream can see a different path than the route saw.
 *
 * - refused (undefined): not starting with `/`; `#` (a fragment has no place in a request
 *   target: frameworks cut the path there, so `/account#` would be served as `/account`); `\`
 *   (WHATWG parsers read it as `/`); a malformed escape; an escaped control character
 *   (`%00`, `%0D`, `%0A`, ... — raw ones never get past Node's parser).
 * - percent-encoding of unreserved characters decoded (RFC 3986 §6.2.2.2; `%2e` is a dot),
 *   other escapes upper-cased; characters WHATWG would escape (`"`, `<`, `{`, ...) escaped;
 * - dot segments removed (RFC 3986 §5.2.4), never above the root;
 * - a leading `//` collapsed to `/`: a WHATWG parser reads `//x/admin` as host `x` and path
 *   `/admin` (Hono, undici and anything calling `new URL(req.url, base)` serve `/admin` for it),
 *   so it would slip past a `pathPrefix: /admin` route.
 *
 * Encoded slashes (`%2F`) and backslashes (`%5C`) are data, not separators: they stay encoded and
 * never split a segment for matching (as WHATWG parsers and Envoy's default do). Some upstreams
 * decode them before resolving dots, so a path where a `.` or `..` segment appears once `%2F` or
 * `%5C` count as separators (`/api/..%2Fadmin`) is refused too.
 */
export function normalizePath(path: string): string | undefined {
  if (path.charCodeAt(0) !== 47 /* / */) return undefined;
  // Fast path: plain paths (the usual case) have nothing to decode, escape or resolve.
  if (isPlain(path)) return path;

  let out = '';
  for (let i = 0; i < path.length; i++) {
    const code = path.charCodeAt(i);
    if (code === 0x25 /* % */) {
      const hi = hexValue(path.charCodeAt(i + 1));
      const lo = hexValue(path.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      const byte = hi * 16 + lo;
      if (byte < 0x20 || byte === 0x7f) return undefined;
      out += isUnreserved(byte) ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
      i += 2;
      continue;
    }
    if (code === 0x23 /* # */ || code === 0x5c /* \ */ || code < 0x21 || code > 0x7e) return undefined;
    out += ESCAPED[code] ?? path[i];
  }
  const resolved = out.includes('/.') ? removeDotSegments(out) : out;
  const normalized = resolved.charCodeAt(1) === 47 /* / */ ? resolved.replace(/^\/+/, '/') : resolved;
  return hasHiddenDotSegment(normalized) ? undefined : normalized;
}

const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function isUnreserved(code: number): boolean {
  return (
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e // - . _ ~
  );
}

/**
 * Printable ASCII characters the running Node's own WHATWG parser escapes in a path (`"` `<` `>`
 * `` ` `` `{` `}` on Node 20; the set has grown across URL-standard revisions), read from that
 * parser once so the normalised path is always one it leaves unchanged.
 */
const ESCAPED: readonly (string | undefined)[] = (() => {
  const table: (string | undefined)[] = [];
  for (let code = 0x21; code <= 0x7e; code++) {
    const c = String.fromCharCode(code);
    if (c === '#' || c === '?' || c === '\\' || c === '%' || c === '/' || c === '.') continue;
    if (new URL(`/a${c}b`, 'http://h').pathname !== `/a${c}b`) table[code] = `%${code.toString(16).toUpperCase()}`;
  }
  return table;
})();

/** Nothing to decode, refuse, escape or resolve: letters, digits and the common punctuation only. */
function isPlain(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const code = path.charCodeAt(i);
    if (code === 0x25 || code === 0x23 || code === 0x5c || code < 0x21 || code > 0x7e || ESCAPED[code] !== undefined) return false;
    if (code === 0x2e /* . */ && path.charCodeAt(i - 1) === 0x2f /* / */) return false;
  }
  return path.charCodeAt(1) !== 47 /* // */;
}

const ALT_SEPARATOR = /%2F|%5C/;
const ANY_SEPARATOR = /\/|%2F|%5C/;

/** A `.`/`..` segment that appears when encoded slashes or backslashes are read as separators. */
function hasHiddenDotSegment(path: string): boolean {
  if (!ALT_SEPARATOR.test(path)) return false;
  return path.split(ANY_SEPARATOR).some((s) => s === '.' || s === '..');
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
