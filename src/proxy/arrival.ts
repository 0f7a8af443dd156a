import type { IncomingMessage } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { GatehouseError } from '../core/errors.js';
import type { RequestFacts } from '../core/headers.js';

/*
 * What a request is before it is routed: its Host, its framing, its target. Refusals here are
 * SPEC §3.1's: what the HTTP parser lets through but a proxy must not guess at.
 */

export const hasBody = (f: RequestFacts) => (f.contentLength !== undefined ? f.contentLength !== '0' : f.transferEncoding !== undefined);

/** `host[:port]` (RFC 9110 §7.2): a reg-name, an IPv4 or an [IPv6] literal; no userinfo, `%` or spaces. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=-]+)(?::\d{0,5})?$/;

/**
 * The Host header's name for matching: without port, lowercased, one trailing dot removed
 * (`Shop.Example.com.:443` -> `shop.example.com`); undefined when the value is not a valid Host.
 */
export function hostName(header: string): string | undefined {
  if (!HOST.test(header)) return undefined;
  const end = header.charCodeAt(0) === 91 /* [ */ ? header.indexOf(']') + 1 : header.indexOf(':');
  let name = end > 0 ? header.slice(0, end) : header;
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name.toLowerCase();
}

/**
 * What the HTTP parser lets through but a proxy must not guess at (SPEC §3.1): a missing,
 * repeated or malformed Host, and a Transfer-Encoding other than `chunked` alone.
 */
export function refuseFraming(facts: RequestFacts, host: string | undefined, httpMinor: number): GatehouseError | undefined {
  if (facts.hostCount > 1) {
    // RFC 9112 §3.2: more than one Host is refused, not guessed at (a request-smuggling vector).
    return new GatehouseError('bad_request', 'the request has more than one Host header');
  }
  if (facts.host === undefined ? httpMinor >= 1 : host === undefined || host === '') {
    return new GatehouseError('bad_request', facts.host === undefined ? 'an HTTP/1.1 request needs a Host header' : 'the Host header is not a valid host[:port]');
  }
  const te = facts.transferEncoding;
  if (te !== undefined && te !== 'chunked' && te.trim().toLowerCase() !== 'chunked') {
    // `gzip, chunked` would reach the upstream as plain chunked with the gzip coding dropped
    return new GatehouseError('not_implemented', `Transfer-Encoding '${te.slice(0, 64)}' is not supported; only chunked`);
  }
  return undefined;
}

export function splitAbsoluteForm(url: string): { authority: string; pathAndQuery: string } | undefined {
  const m = /^https?:\/\/([^/?#@]+)([/?][^#]*)?$/i.exec(url);
  if (!m) return undefined;
  const rest = m[2] ?? '/';
  return { authority: m[1]!, pathAndQuery: rest.startsWith('?') ? `/${rest}` : rest };
}


export function traceIdOf(traceparent: string): string {
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}/.exec(traceparent);
  return m?.[1] ?? '';
}

export const tooLarge = (max: number) => new GatehouseError('payload_too_large', `the request body is larger than the route's maxBodySize of ${max} bytes`);

/** A chunked body of unknown length, cut off with 413 once it passes the route's limit. */
export function limitBody(req: IncomingMessage, max: number): Transform {
  let seen = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      seen += chunk.length;
      if (seen > max) done(tooLarge(max));
      else done(null, chunk);
    },
  });
  req.on('error', (err) => limiter.destroy(err));
  return req.pipe(limiter);
}
