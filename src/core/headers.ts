/**
 * Header hygiene on the hot path: hop-by-hop headers (RFC 9110 §7.6.1) and those named in
 * `Connection` never cross the proxy; headers gatehouse asserts are stripped from the client's
 * copy before the configured `set` runs, so a client cannot forge them.
 */

const LOWER_CACHE = new Map<string, string>();
const LOWER_CACHE_MAX = 512;

/** Lowercases a header name, remembering the common spellings (undici's lookup-table idea). */
export function lowerName(name: string): string {
  let lower = LOWER_CACHE.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (LOWER_CACHE.size < LOWER_CACHE_MAX) LOWER_CACHE.set(name, lower);
  }
  return lower;
}

export function isHopByHop(lower: string): boolean {
  switch (lower) {
    case 'connection':
    case 'keep-alive':
    case 'proxy-connection':
    case 'proxy-authenticate':
    case 'proxy-authorization':
    case 'te':
    case 'trailer':
    case 'transfer-encoding':
    case 'upgrade':
      return true;
    default:
      return false;
  }
}

/** Names listed in a `Connection` header, other than the usual close/keep-alive. */
export function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined; // nearly every request
  let tokens: Set<string> | undefined;
  for (const raw of value.split(',')) {
    const t = raw.trim().toLowerCase();
    if (t === '' || t === 'close' || t === 'keep-alive') continue;
    (tokens ??= new Set()).add(t);
  }
  return tokens;
}

/** What the first pass over the request headers learned; the route is not known yet. */
export interface RequestFacts {
  host: string | undefined;
  /** How many Host fields came: more than one is refused. */
  hostCount: number;
  requestId: string | undefined;
  forwardedFor: string | undefined;
  forwardedProto: string | undefined;
  forwardedHost: string | undefined;
  traceparent: string | undefined;
  tracestate: string | undefined;
  connection: string | undefined;
  contentLength: string | undefined;
  transferEncoding: string | undefined;
}

/** One pass over the raw request headers for the few gatehouse needs before routing. */
export function scanRequestHeaders(raw: readonly string[]): RequestFacts {
  const facts: RequestFacts = {
    host: undefined,
    hostCount: 0,
    requestId: undefined,
    forwardedFor: undefined,
    forwardedProto: undefined,
    forwardedHost: undefined,
    traceparent: undefined,
    tracestate: undefined,
    connection: undefined,
    contentLength: undefined,
    transferEncoding: undefined,
  };
  for (let i = 0; i < raw.length; i += 2) {
    const value = raw[i + 1]!;
    switch (lowerName(raw[i]!)) {
      case 'host':
        facts.host ??= value;
        facts.hostCount++;
        break;
      case 'x-request-id':
        facts.requestId ??= value;
        break;
      case 'x-forwarded-for':
        facts.forwardedFor = facts.forwardedFor === undefined ? value : `${facts.forwardedFor}, ${value}`;
        break;
      case 'x-forwarded-proto':
        facts.forwardedProto ??= value;
        break;
      case 'x-forwarded-host':
        facts.forwardedHost ??= value;
        break;
      case 'traceparent':
        facts.traceparent ??= value;
        break;
      case 'tracestate':
        facts.tracestate ??= value;
        break;
      case 'connection':
        facts.connection ??= value;
        break;
      case 'content-length':
        facts.contentLength ??= value;
        break;
      case 'transfer-encoding':
        // every field: `Transfer-Encoding: gzip` + `Transfer-Encoding: chunked` is `gzip, chunked`
        facts.transferEncoding = facts.transferEncoding === undefined ? value : `${facts.transferEncoding}, ${value}`;
        break;
    }
  }
  return facts;
}

/** Case-insensitive lookup in a raw header list ([name, value, ...]) without building an object. */
export function findHeader(raw: readonly string[], lowerName: string): string | undefined {
  const len = lowerName.length;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === len && (name === lowerName || name.toLowerCase() === lowerName)) return raw[i + 1];
  }
  return undefined;
}
