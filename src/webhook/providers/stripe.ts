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

/**
 * `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...]`: the timestamp within the replay window
 * and the v1 signatures, or why the header cannot be one Stripe sent.
 */
function parseStripeSignature(req: SignedHeaders, toleranceMs: number, nowMs: number): { t: string; signatures: Buffer[] } | Rejection {
  const header = req.header('stripe-signature');
  if (header === undefined) return reject('the Stripe-Signature header is missing');
  let t: string | undefined;
  const signatures: Buffer[] = [];
  for (const item of header.split(',')) {
    const eq = item.indexOf('=');
    const k = item.slice(0, eq).trim();
    if (k === 't') t = item.slice(eq + 1).trim();
    else if (k === 'v1') {
      const sig = decodeSignature(item.slice(eq + 1), 'hex');
      if (sig?.length === SHA256_BYTES) signatures.push(sig);
    }
  }
  const stale = checkTimestamp(t, toleranceMs, nowMs);
  if (stale !== undefined) return reject(`Stripe-Signature: ${stale}`);
  if (signatures.length === 0) return reject('Stripe-Signature carries no v1 signature');
  return { t: t!, signatures };
}

/** Before the body: a Stripe-Signature with a fresh `t=` and a well-formed v1. */
export function checkStripeHeaders(toleranceMs: number): HeaderCheck {
  return function checkStripeSignatureHeader(req, nowMs) {
    const parsed = parseStripeSignature(req, toleranceMs, nowMs);
    return isRejection(parsed) ? parsed : undefined;
  };
}

/**
 * Stripe: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 over `<t>.<raw body>`.
 * Several v1 entries during a secret roll; the event id is the JSON body's `id`.
 */
export function compileStripe(keys: readonly KeyObject[], toleranceMs: number): Verifier {
  return function verifyStripeSignature(req, nowMs) {
    const parsed = parseStripeSignature(req, toleranceMs, nowMs);
    if (isRejection(parsed)) return parsed;
    const { t, signatures } = parsed;
    if (!anyMatches(keys, signatures, (key) => hmac('sha256', key, t, '.', req.body))) return reject('no v1 signature matches the body');
    const body = req.json();
    const id = body !== null && typeof body === 'object' ? (body as { id?: unknown }).id : undefined;
    return { ok: true, eventId: typeof id === 'string' && id !== '' ? id : undefined };
  };
}
