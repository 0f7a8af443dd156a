import type { KeyObject } from 'node:crypto';
import { anyMatches, decodeSignature, hmac, isRejection, reject, SHA256_BYTES, type HeaderCheck, type Rejection, type SignedHeaders, type Verifier } from '../signature.js';

/** `X-Shopify-Hmac-Sha256: <base64 of 32 bytes>`. */
function parseShopifySignature(req: SignedHeaders): Buffer | Rejection {
  const header = req.header('x-shopify-hmac-sha256');
  if (header === undefined) return reject('the X-Shopify-Hmac-Sha256 header is missing');
  const sig = decodeSignature(header, 'base64');
  return sig?.length === SHA256_BYTES ? sig : reject('X-Shopify-Hmac-Sha256 is not a base64 HMAC-SHA256');
}

/** Before the body: a well-formed X-Shopify-Hmac-Sha256. */
export const checkShopifyHeaders: HeaderCheck = function checkShopifySignatureHeader(req) {
  const parsed = parseShopifySignature(req);
  return isRejection(parsed) ? parsed : undefined;
};

/** Shopify: `X-Shopify-Hmac-Sha256`, base64 HMAC-SHA256 of the raw body; id `X-Shopify-Webhook-Id`. */
export function compileShopify(keys: readonly KeyObject[]): Verifier {
  return function verifyShopifySignature(req) {
    const sig = parseShopifySignature(req);
    if (isRejection(sig)) return sig;
    if (!anyMatches(keys, [sig], (key) => hmac('sha256', key, req.body))) return reject('X-Shopify-Hmac-Sha256 does not match the body');
    return { ok: true, eventId: req.header('x-shopify-webhook-id') || undefined };
  };
}
