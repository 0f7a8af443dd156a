import type { KeyObject } from 'node:crypto';
import type { WebhookConfig } from '../../config/schema.js';
import { anyMatches, decodeSignature, hmac, readKey, reject, type Verifier } from '../signature.js';

type HmacConfig = Extract<WebhookConfig, { provider: 'hmac' }>;

/**
 * Any provider that signs the raw body with an HMAC in one header: `header`, `algorithm`,
 * `encoding`, an optional `prefix` (`sha256=`), several signatures separated by `,` or spaces.
 */
export function compileHmac(keys: readonly KeyObject[], cfg: HmacConfig): Verifier {
  const { header: name, algorithm, encoding, prefix, eventId } = cfg;
  return function verifyHmacSignature(req) {
    const header = req.header(name);
    if (header === undefined) return reject(`the ${name} header is missing`);
    const signatures: Buffer[] = [];
    for (const item of header.split(/[,\s]+/)) {
      if (item === '' || !item.startsWith(prefix)) continue;
      const sig = decodeSignature(item.slice(prefix.length), encoding);
      if (sig !== undefined) signatures.push(sig);
    }
    if (signatures.length === 0 || !anyMatches(keys, signatures, (key) => hmac(algorithm, key, req.body))) {
      return reject(`${name} does not match the body`);
    }
    return { ok: true, eventId: readKey(req, eventId) };
  };
}
