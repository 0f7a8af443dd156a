import type { KeyObject } from 'node:crypto';
import type { WebhookConfig } from '../../config/schema.js';
import { anyMatches, decodeSignature, hmac, isRejection, readKey, reject, type HeaderCheck, type Rejection, type SignedHeaders, type Verifier } from '../signature.js';

type HmacConfig = Extract<WebhookConfig, { provider: 'hmac' }>;

const DIGEST_BYTES = { sha1: 20, sha256: 32, sha512: 64 } as const;

/** The signatures of the configured header that have the prefix and the digest's length. */
function parseHmacSignatures(req: SignedHeaders, cfg: HmacConfig): Buffer[] | Rejection {
  const { header: name, encoding, prefix } = cfg;
  const header = req.header(name);
  if (header === undefined) return reject(`the ${name} header is missing`);
  const signatures: Buffer[] = [];
  for (const item of header.split(/[,\s]+/)) {
    if (item === '' || !item.startsWith(prefix)) continue;
    const sig = decodeSignature(item.slice(prefix.length), encoding);
    if (sig?.length === DIGEST_BYTES[cfg.algorithm]) signatures.push(sig);
  }
  return signatures.length === 0 ? reject(`${name} carries no ${cfg.algorithm} signature in ${encoding}`) : signatures;
}

/** Before the body: the configured header with at least one well-formed signature. */
export function checkHmacHeaders(cfg: HmacConfig): HeaderCheck {
  return function checkHmacSignatureHeader(req) {
    const parsed = parseHmacSignatures(req, cfg);
    return isRejection(parsed) ? parsed : undefined;
  };
}

/**
 * Any provider that signs the raw body with an HMAC in one header: `header`, `algorithm`,
 * `encoding`, an optional `prefix` (`sha256=`), several signatures separated by `,` or spaces.
 */
export function compileHmac(keys: readonly KeyObject[], cfg: HmacConfig): Verifier {
  const { header: name, algorithm, eventId } = cfg;
  return function verifyHmacSignature(req) {
    const signatures = parseHmacSignatures(req, cfg);
    if (isRejection(signatures)) return signatures;
    if (!anyMatches(keys, signatures, (key) => hmac(algorithm, key, req.body))) return reject(`${name} does not match the body`);
    return { ok: true, eventId: readKey(req, eventId) };
  };
}
