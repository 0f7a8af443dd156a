/**
 * Every answer gatehouse makes itself, in one table (SPEC §4). A leaf module: the concerns
 * (security, quota, resilience, webhook) import it to return refusals as values.
 */
export const ERRORS = {
  bad_request: { status: 400, title: 'Bad request' },
  no_route: { status: 404, title: 'No route' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  invalid_signature: { status: 401, title: 'Invalid webhook signature' },
  forbidden: { status: 403, title: 'Forbidden' },
  request_timeout: { status: 408, title: 'Request timeout' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  headers_too_large: { status: 431, title: 'Request header fields too large' },
  rate_limited: { status: 429, title: 'Rate limited' },
  bad_gateway: { status: 502, title: 'Bad gateway' },
  circuit_open: { status: 503, title: 'Upstream circuit open' },
  overloaded: { status: 503, title: 'Upstream overloaded' },
  no_healthy_upstream: { status: 503, title: 'No healthy upstream' },
  not_implemented: { status: 501, title: 'Not implemented' },
  auth_unavailable: { status: 503, title: 'Authentication unavailable' },
  store_unavailable: { status: 503, title: 'Store unavailable' },
  upstream_timeout: { status: 504, title: 'Upstream timeout' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** A refusal or failure that gatehouse answers itself, as application/problem+json. */
export class GatehouseError extends Error {
  readonly code: ErrorCode;
  /** Extra response headers, such as `Retry-After` or `WWW-Authenticate`. */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(code: ErrorCode, detail: string, headers?: Readonly<Record<string, string>>) {
    super(detail);
    this.name = 'GatehouseError';
    this.code = code;
    this.headers = headers;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }
}

/** How an upstream exchange failed without a usable answer; the names of `retry.on`. */
export type FailureKind = 'connect-failure' | 'reset' | 'timeout' | 'invalid-response' | 'tls' | 'aborted';

export class UpstreamError extends Error {
  readonly kind: FailureKind;

  constructor(kind: FailureKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamError';
    this.kind = kind;
  }
}

/** A TLS failure's code (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_TLS_CERT_ALTNAME_INVALID`, ...): no peer data. */
export function tlsReason(err: UpstreamError): string {
  const code = (err.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'handshake failed';
}
