import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { onCleanup } from './cleanup.js';

export interface SigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function makeKey(kid: string, alg: 'RS256' | 'ES256' | 'PS256' = 'RS256'): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

/** Signs a JWT with sensible defaults (iat now, exp in 5 minutes); `claims` override them. */
export async function sign(key: SigningKey, claims: JWTPayload = {}, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iat: now, exp: now + 300, ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header })
    .sign(key.privateKey);
}

export interface JwksServer {
  readonly url: string;
  /** `<url>/jwks.json` */
  readonly jwksUri: string;
  /** The issuer whose discovery document is served at `<issuer>/.well-known/openid-configuration`. */
  readonly issuer: string;
  /** Keys currently published; replace to rotate. */
  keys: SigningKey[];
  /** While true every request gets 503 (the identity provider is down). */
  down: boolean;
  readonly fetches: { jwks: number; discovery: number };
}

/** A real JWKS endpoint (and OIDC discovery document) on 127.0.0.1. */
export async function startJwksServer(keys: SigningKey[]): Promise<JwksServer> {
  const sockets = new Set<Socket>();
  const state = { keys, down: false, fetches: { jwks: 0, discovery: 0 } };
  let base = '';
  const server = createServer((req, res) => {
    if (state.down) {
      res.writeHead(503).end();
      return;
    }
    if (req.url === '/jwks.json') {
      state.fetches.jwks++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys.map((k) => k.publicJwk) }));
      return;
    }
    if (req.url === '/issuer/.well-known/openid-configuration') {
      state.fetches.discovery++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: `${base}/issuer`, jwks_uri: `${base}/jwks.json` }));
      return;
    }
    res.writeHead(404).end();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return Object.assign(state, { url: base, jwksUri: `${base}/jwks.json`, issuer: `${base}/issuer` });
}
