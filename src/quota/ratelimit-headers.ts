import type { BucketResult } from '../core/bucket.js';

/**
 * The IETF rate-limit fields in their structured-field form (draft-ietf-httpapi-ratelimit-headers-11),
 * one list member per limit:
 *   RateLimit-Policy: "checkout-0";q=10;w=1, "checkout-1";q=1000;w=3600
 *   RateLimit: "checkout-0";r=9;t=1, "checkout-1";r=999;t=4
 * Quota names are gatehouse names ([A-Za-z0-9_.-]), so they need no escaping inside the quotes.
 */

export const POLICY_HEADER = 'RateLimit-Policy';
export const STATE_HEADER = 'RateLimit';

/** One limit's `RateLimit-Policy` member, its window in whole seconds (rounded up): built once at compile time. */
export const policyMember = (name: string, limit: number, perMs: number): string => `"${name}";q=${limit};w=${Math.max(1, Math.ceil(perMs / 1000))}`;

/**
 * The `RateLimit` value for the limits of one request. `r` is whole tokens left, `t` the seconds
 * until the bucket is full again (rounded up). Limits without a result (not evaluated because
 * another store refused first) are left out.
 */
export function formatRateLimit(names: readonly string[], results: readonly (BucketResult | undefined)[]): string {
  let out = '';
  for (let i = 0; i < names.length; i++) {
    const r = results[i];
    if (r === undefined) continue;
    if (out !== '') out += ', ';
    out += `"${names[i]!}";r=${r.remaining};t=${Math.ceil(r.resetMs / 1000)}`;
  }
  return out;
}

/** `Retry-After` in whole seconds, never 0: a 429 that says "retry now" invites a tight loop. */
export const retryAfterSeconds = (ms: number): string => String(Math.max(1, Math.ceil(ms / 1000)));
