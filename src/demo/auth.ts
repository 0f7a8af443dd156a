import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { sendJson, startHttpServer, type DemoServer } from './http.js';

/**
 * The demo's identity provider: an ES256 key pair made at start, its public half served as a
 * JWKS (as an OpenID provider serves `/.well-known/jwks.json`), and tokens signed with the
 * private half. gatehouse fetches the JWKS and verifies the tokens; it never sees the private key.
 */

export interface AuthOptions {
  readonly port: number;
  /** `iss` of the tokens: the route's `jwt.issuer` in demo.yaml. */
  readonly issuer: string;
  /** `aud` of the tokens: one of the route's `jwt.audiences`. */
  readonly audience: string;
}

export interface DemoAuth extends DemoServer {
  /** A token for `sub`, valid for `lifetime` (jose's notation: `24h`). */
  mint(sub: string, lifetime: string): Promise<string>;
}

const KID = 'demo-key-1';

export async function startDemoAuth(options: AuthOptions): Promise<DemoAuth> {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: KID, alg: 'ES256', use: 'sig' }] };
  const server = await startHttpServer(options.port, (req, res) => {
    if (req.url === '/.well-known/jwks.json' && req.method === 'GET') return sendJson(res, 200, jwks);
    return sendJson(res, 404, { error: 'this identity provider serves GET /.well-known/jwks.json' });
  });
  return {
    ...server,
    mint: (sub, lifetime) =>
      new SignJWT({ scope: 'account:read' })
        .setProtectedHeader({ alg: 'ES256', kid: KID })
        .setIssuer(options.issuer)
        .setAudience(options.audience)
        .setSubject(sub)
        .setIssuedAt()
        .setExpirationTime(lifetime)
        .sign(privateKey),
  };
}
