import type { KeyObject } from 'node:crypto';
import { anyMatches, decodeSignature, hmac, isRejection, reject, SHA256_BYTES, type HeaderCheck, type Rejection, type SignedHeaders, type Verifier } from '../signature.js';

/** `X-Hub-Signature-256: sha256=<64 hex digits>`. */
function parseGithubSignature(req: SignedHeaders): Buffer | Rejection {
  const header = req.header('x-hub-signature-256');
  if (header === undefined) return reject('the X-Hub-Signature-256 header is missing');
  const sig = header.startsWith('sha256=') ? decodeSignature(header.slice(7), 'hex') : undefined;
  return sig?.length === SHA256_BYTES ? sig : reject('X-Hub-Signature-256 is not sha256=<64 hex digits>');
}

/** Before the body: a well-formed X-Hub-Signature-256. */
export const checkGithubHeaders: HeaderCheck = function checkGithubSignatureHeader(req) {
  const parsed = parseGithubSignature(req);
  return isRejection(parsed) ? parsed : undefined;
};

/** GitHub: `X-Hub-Signature-256: sha256=<hex>` of the raw body; id `X-GitHub-Delivery`. */
export function compileGithub(keys: readonly KeyObject[]): Verifier {
  return function verifyGithubSignature(req) {
    const sig = parseGithubSignature(req);
    if (isRejection(sig)) return sig;
    if (!anyMatches(keys, [sig], (key) => hmac('sha256', key, req.body))) return reject('X-Hub-Signature-256 does not match the body');
    return { ok: true, eventId: req.header('x-github-delivery') || undefined };
  };
}
