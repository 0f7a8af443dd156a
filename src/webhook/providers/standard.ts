import type { KeyObject } from 'node:crypto';
import {
  anyMatches,
  checkTimestamp,
  decodeSignature,
  hmac,
  isRejection,
  reject,
  SHA256_BYTES,
  type HeaderCheck,
  type Rejection,
  type SignedHeaders,
  type Verifier,
} from '../signature.js';

/** The three headers (`webhook-*`, or Svix's `svix-*`): id, a timestamp within the window, v1 signatures. */
function parseStandardHeaders(req: SignedHeaders, toleranceMs: number, nowMs: number): { id: string; timestamp: string; signatures: Buffer[] } | Rejection {
  const svix = req.header('webhook-signature') === undefined;
  const id = req.header(svix ? 'svix-id' : 'webhook-id');
  const timestamp = req.header(svix ? 'svix-timestamp' : 'webhook-timestamp');
  const header = req.header(svix ? 'svix-signature' : 'webhook-signature');
  if (header === undefined) return reject('the webhook-signature header is missing');
  if (id === undefined || id === '') return reject('the webhook-id header is missing');
  const stale = checkTimestamp(timestamp, toleranceMs, nowMs);
  if (stale !== undefined) return reject(`webhook-timestamp: ${stale}`);
  const signatures: Buffer[] = [];
  for (const item of header.split(' ')) {
    if (!item.startsWith('v1,')) continue; // v1a (asymmetric) and unknown versions are not ours to check
    const sig = decodeSignature(item.slice(3), 'base64');
    if (sig?.length === SHA256_BYTES) signatures.push(sig);
  }
  if (signatures.length === 0) return reject('webhook-signature carries no v1 signature');
  return { id, timestamp: timestamp!, signatures };
}

/** Before the body: webhook-id, a fresh webhook-timestamp and a well-formed v1 signature. */
export function checkStandardHeaders(toleranceMs: number): HeaderCheck {
  return function checkStandardSignatureHeaders(req, nowMs) {
    const parsed = parseStandardHeaders(req, toleranceMs, nowMs);
    return isRejection(parsed) ? parsed : undefined;
  };
}

/**
 * Standard Webhooks (and Svix, whose `svix-*` headers are the same scheme): `webhook-id`,
 * `webhook-timestamp`, `webhook-signature: v1,<base64> [v1,<base64> ...]` over
 * `<id>.<timestamp>.<raw body>`, keyed by the base64 secret after `whsec_`.
 */
export function compileStandard(keys: readonly KeyObject[], toleranceMs: number): Verifier {
  return function verifyStandardSignature(req, nowMs) {
    const parsed = parseStandardHeaders(req, toleranceMs, nowMs);
    if (isRejection(parsed)) return parsed;
    const { id, timestamp, signatures } = parsed;
    if (!anyMatches(keys, signatures, (key) => hmac('sha256', key, id, '.', timestamp, '.', req.body))) {
      return reject('no v1 signature matches the body');
    }
    return { ok: true, eventId: id };
  };
}
