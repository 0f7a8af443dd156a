import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A PEM pair on disk, and its text. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export interface TestPki {
  readonly dir: string;
  readonly ca: { readonly cert: string; readonly certPem: string };
  /** For 127.0.0.1 and localhost, signed by the CA. */
  readonly server: CertFiles;
  /** A client certificate (CN=store-client), signed by the CA. */
  readonly client: CertFiles;
  /** Issues another certificate from the CA (rotation, other names). */
  issue(name: string, options?: { cn?: string; san?: string; client?: boolean; days?: number }): CertFiles;
}

const openssl = (dir: string, args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });

/**
 * A throw-away PKI made with the real `openssl` binary: a CA, a server certificate for
 * 127.0.0.1/localhost and a client certificate. EC P-256 keys: fast to make.
 */
export function createPki(caName = 'gatehouse-test-ca'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pki-'));
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', `/CN=${caName}`]);
  let serial = 1;
  const issue: TestPki['issue'] = (name, options = {}) => {
    const cn = options.cn ?? name;
    openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}/O=Gatehouse Test`]);
    const ext = options.client
      ? 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n'
      : `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${options.san ?? 'IP:127.0.0.1,DNS:localhost'}\n`;
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(++serial), '-days', String(options.days ?? 2), '-out', `${name}.crt`, '-extfile', `${name}.ext`]);
    const cert = join(dir, `${name}.crt`);
    const key = join(dir, `${name}.key`);
    return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  };
  const caCert = join(dir, 'ca.crt');
  return {
    dir,
    ca: { cert: caCert, certPem: readFileSync(caCert, 'utf8') },
    server: issue('server', { cn: 'localhost' }),
    client: issue('client', { cn: 'store-client', client: true }),
    issue,
  };
}
