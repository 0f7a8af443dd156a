import type { KeyObject } from 'node:crypto';
import { anyMatches, decodeSignature, hmac, reject, type Verifier } from '../signature.js';

/** GitHub: `X-Hub-Signature-256: sha256=<hex>` of the raw body; id `X-GitHub-Delivery`. */
export function compileGithub(keys: readonly KeyObject[]): Verifier {
  return function verifyGithubSignature(req) {
    const header = req.header('x-hub-signature-256');
    if (header === undefined) return reject('the X-Hub-Signature-256 header is missing');
    const sig = header.startsWith('sha256=') ? decodeSignature(header.slice(7), 'hex') : undefined;
    if (sig === undefined || !anyMatches(keys, [sig], (key) => hmac('sha256', key, req.body))) {
      return reject('X-Hub-Signature-256 does not match the body');
    }
    return { ok: true, eventId: req.header('x-github-delivery') || undefined };
  };
}
