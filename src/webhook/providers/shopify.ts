import type { KeyObject } from 'node:crypto';
import { anyMatches, decodeSignature, hmac, reject, type Verifier } from '../signature.js';

/** Shopify: `X-Shopify-Hmac-Sha256`, base64 HMAC-SHA256 of the raw body; id `X-Shopify-Webhook-Id`. */
export function compileShopify(keys: readonly KeyObject[]): Verifier {
  return function verifyShopifySignature(req) {
    const header = req.header('x-shopify-hmac-sha256');
    if (header === undefined) return reject('the X-Shopify-Hmac-Sha256 header is missing');
    const sig = decodeSignature(header, 'base64');
    if (sig === undefined || !anyMatches(keys, [sig], (key) => hmac('sha256', key, req.body))) {
      return reject('X-Shopify-Hmac-Sha256 does not match the body');
    }
    return { ok: true, eventId: req.header('x-shopify-webhook-id') || undefined };
  };
}
