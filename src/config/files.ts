import { createPrivateKey, X509Certificate } from 'node:crypto';
import { MAX_REFERENCED_BYTES, readBoundedFile, whyUnreadable } from './read.js';
import { readPem, type Config, type UpstreamTlsConfig } from './schema.js';

export interface FileProblem {
  readonly path: PropertyKey[];
  readonly message: string;
  /** The file does not exist (what `validate --env-optional` lets pass: a secret mounted in production only). */
  readonly missing?: boolean;
}

/**
 * The files a valid config names — TLS certificates, keys and CAs, local JWKS — checked once the
 * schema passed, so `gatehouse validate` and a reload report an unreadable or unparsable file at
 * its key's position instead of failing later at bind or on the first request. Kept out of the
 * schema itself so that the schema does no I/O. A problem never quotes key material.
 */
export function fileProblems(config: Config): FileProblem[] {
  const problems: FileProblem[] = [];
  const pem = (path: PropertyKey[], source: string | undefined, what: 'certificate' | 'key') => {
    if (source === undefined) return;
    let text: string;
    try {
      text = readPem(source);
    } catch (err) {
      problems.push({ path, message: `cannot read ${what} file ${source} (${whyUnreadable(err)})`, missing: whyUnreadable(err) === 'ENOENT' });
      return;
    }
    try {
      if (what === 'key') createPrivateKey(text);
      else new X509Certificate(text);
    } catch (err) {
      const kind = what === 'key' ? 'an unencrypted PEM private key' : 'a PEM certificate';
      problems.push({ path, message: `must be ${kind} (${(err as { code?: string }).code ?? 'unparsable'})` });
    }
  };

  config.listeners.forEach((l, i) => {
    if (l.tls === undefined) return;
    pem(['listeners', i, 'tls', 'cert'], l.tls.cert, 'certificate');
    pem(['listeners', i, 'tls', 'key'], l.tls.key.reveal(), 'key');
    pem(['listeners', i, 'tls', 'clientCa'], l.tls.clientCa, 'certificate');
  });
  const upstreamTls = (path: PropertyKey[], tls: UpstreamTlsConfig | undefined) => {
    if (tls === undefined) return;
    pem([...path, 'ca'], tls.ca, 'certificate');
    pem([...path, 'cert'], tls.cert, 'certificate');
    pem([...path, 'key'], tls.key?.reveal(), 'key');
  };
  for (const [name, u] of Object.entries(config.upstreams)) {
    upstreamTls(['upstreams', name, 'tls'], u.tls);
    upstreamTls(['upstreams', name, 'credentials', 'oauth2', 'tls'], u.credentials?.oauth2?.tls);
  }
  config.routes.forEach((r, i) => {
    const file = r.jwt?.jwks;
    if (file === undefined) return;
    const path = ['routes', i, 'jwt', 'jwks'];
    let text: string;
    try {
      text = readBoundedFile(file, MAX_REFERENCED_BYTES);
    } catch (err) {
      problems.push({ path, message: `cannot read JWKS file ${file} (${whyUnreadable(err)})`, missing: whyUnreadable(err) === 'ENOENT' });
      return;
    }
    try {
      const parsed = JSON.parse(text) as { keys?: unknown } | null;
      if (!Array.isArray(parsed?.keys)) problems.push({ path, message: `${file} is not a JSON Web Key Set ({"keys": [...]})` });
    } catch {
      problems.push({ path, message: `cannot read JWKS file ${file} (not JSON)` });
    }
  });
  return problems;
}
