import { constants, createHash, X509Certificate } from 'node:crypto';
import { unwatchFile, watchFile } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext, rootCertificates, type ConnectionOptions, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { buildConnector } from 'undici';
import type { ListenerTlsConfig, UpstreamTlsConfig } from '../config/schema.js';
import { readPem } from '../config/values.js';
import type { Stage } from '../core/exchange.js';
import { toHeaderValue } from './header-value.js';

/*
 * TLS both ways. Inbound: an HTTPS listener's secure context, re-read when its files change
 * (certificate rotation without a restart), mTLS when `clientCa` is set. Outbound: the connect
 * options an upstream's pools and WebSocket relay use: system CAs plus `ca`, a client
 * certificate, SNI / verification name, and verification on unless explicitly skipped.
 */

/** What https.createServer needs for a listener; files are read now. */
export interface ServerTls {
  readonly options: SecureContextOptions & { requestCert: boolean; rejectUnauthorized: true };
}

/**
 * Mozilla's "intermediate" profile (ssl-config.mozilla.org, v5.7) without the DHE suites: TLS 1.3's
 * three suites, and for TLS 1.2 only ECDHE key exchange with AEAD ciphers — no RSA key exchange
 * (no forward secrecy), no CBC, no SHA-1 MACs. `tls.ciphers` replaces it.
 */
export const DEFAULT_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export function loadServerTls(cfg: ListenerTlsConfig): ServerTls {
  const clientCa = cfg.clientCa === undefined ? undefined : readPem(cfg.clientCa);
  return {
    options: {
      cert: readPem(cfg.cert),
      key: readPem(cfg.key.reveal()),
      ...(clientCa === undefined ? {} : { ca: clientCa }),
      minVersion: cfg.minVersion,
      ciphers: cfg.ciphers ?? DEFAULT_CIPHERS,
      // Client-initiated renegotiation costs the server a handshake per request of the client's
      // choosing (a DoS lever) and is never needed: refused in OpenSSL itself.
      secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
      // Without clientCa no certificate is asked for; with it, a client without a valid one is
      // refused during the handshake, before any HTTP byte is read.
      requestCert: clientCa !== undefined,
      rejectUnauthorized: true,
    },
  };
}

/**
 * Installs `cfg` on a running server: a new secure context for new connections, and whether it
 * asks for client certificates. Throws (naming the file, never key material) when a file is bad.
 */
export function applyServerTls(server: TlsServer, cfg: ListenerTlsConfig): SecureContextOptions {
  const { options } = loadServerTls(cfg);
  server.setSecureContext(options);
  Object.assign(server, { requestCert: options.requestCert, rejectUnauthorized: true });
  return options;
}

/**
 * Applies a listener's TLS config to a running server and keeps it current: the cert, key and
 * clientCa files are polled, and a change installs a new secure context for new connections.
 * A file caught half-written (unparsable) is skipped; the next change tries again. Returns stop().
 */
export function watchServerTls(server: TlsServer, cfg: ListenerTlsConfig, listener: string, logger: Logger, intervalMs = 1000): () => void {
  const files = [cfg.cert, cfg.key.reveal(), cfg.clientCa].filter((f): f is string => f !== undefined && !f.trimStart().startsWith('-----BEGIN'));
  const reload = () => {
    try {
      const options = applyServerTls(server, cfg);
      logger.info({ listener, certificate: describeCertificate(options.cert as string) }, 'TLS certificate reloaded');
    } catch (err) {
      // The message names the file and the parse error, never key material.
      logger.error({ listener, err: (err as Error).message }, 'TLS certificate reload failed; the previous certificate stays in use');
    }
  };
  let debounce: NodeJS.Timeout | undefined;
  const onChange = (curr: { mtimeMs: number; size: number; ino: number }, prev: { mtimeMs: number; size: number; ino: number }) => {
    if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size && curr.ino === prev.ino) return;
    clearTimeout(debounce);
    // cert and key are usually replaced together: wait for the pair
    debounce = setTimeout(reload, 100);
  };
  for (const f of files) watchFile(f, { interval: intervalMs, persistent: false }, onChange);
  return () => {
    clearTimeout(debounce);
    for (const f of files) unwatchFile(f, onChange);
  };
}

/** `CN=...` and expiry of a PEM certificate, for logs. */
function describeCertificate(pem: string): string {
  try {
    const c = new X509Certificate(pem);
    return `${c.subject.replaceAll('\n', ', ')} (valid to ${c.validTo})`;
  } catch {
    return 'unparsable certificate';
  }
}

export interface UpstreamTls {
  /** undici `connect` / https.Agent options. */
  readonly connect: ConnectionOptions;
  /** `serverName`: the name every endpoint must prove, instead of its own host name. */
  readonly serverName: string | undefined;
  /** Hash of the material read from files: a reload rebuilds the pools when a file changed. */
  readonly digest: string;
  readonly insecure: boolean;
}

export function loadUpstreamTls(cfg: UpstreamTlsConfig): UpstreamTls {
  const ca = cfg.ca === undefined ? undefined : readPem(cfg.ca);
  const cert = cfg.cert === undefined ? undefined : readPem(cfg.cert);
  const key = cfg.key === undefined ? undefined : readPem(cfg.key.reveal());
  // Built once: passing `ca` per connection would make every new connection parse the ~140
  // system roots again. `ca` replaces Node's trust store, so the roots go along with the extra CA.
  const secureContext = createSecureContext({
    ...(ca === undefined ? {} : { ca: [...rootCertificates, ca] }),
    ...(cert === undefined || key === undefined ? {} : { cert, key }),
    minVersion: cfg.minVersion,
  });
  const connect: ConnectionOptions = {
    secureContext,
    // tls.connect checks the certificate against `servername` when given: SNI and verification
    // name are one setting (without it: the endpoint's host name; no SNI for an IP address).
    ...(cfg.serverName === undefined ? {} : { servername: cfg.serverName }),
    rejectUnauthorized: !cfg.insecureSkipVerify,
  };
  const digest = createHash('sha256')
    .update(JSON.stringify([ca, cert, key, cfg.serverName, cfg.minVersion, cfg.insecureSkipVerify]))
    .digest('hex')
    .slice(0, 16);
  return { connect, serverName: cfg.serverName, digest, insecure: cfg.insecureSkipVerify };
}

/**
 * The name an https endpoint must prove and that goes out as SNI: `tls.serverName`, else the
 * endpoint's host name; undefined for an IP address (no SNI; the certificate's IP entry is checked).
 * Never the request's Host: with `rewrite.host: preserve` a client picks that, and a certificate
 * for the client's name must not receive the upstream's injected credentials.
 */
export function upstreamTlsName(hostname: string, tls: UpstreamTls | undefined): string | undefined {
  if (tls?.serverName !== undefined) return tls.serverName;
  const host = hostname.replace(/^\[|\]$/g, '');
  return isIP(host) === 0 ? host : undefined;
}

/**
 * undici's connector for an https endpoint, with the TLS name pinned. undici derives SNI and the
 * verified name from each request's `host` header and prefers it over the connect options, so
 * the name is forced here, under every pool and health-check client of the endpoint.
 */
export function upstreamConnector(hostname: string, tls: UpstreamTls | undefined, timeoutMs: number): buildConnector.connector {
  const servername = upstreamTlsName(hostname, tls);
  const connect = buildConnector({ ...tls?.connect, timeout: timeoutMs });
  return function pinnedConnect(options, callback) {
    connect({ ...options, servername }, callback);
  };
}

/** A verified client certificate's facts, computed once per connection (a keep-alive connection carries many requests). */
export interface ClientCertFacts {
  readonly subject: string;
  readonly fingerprint: string;
}

const factsBySocket = new WeakMap<TLSSocket, ClientCertFacts | null>();

function clientCertFacts(socket: TLSSocket): ClientCertFacts | undefined {
  let facts = factsBySocket.get(socket);
  if (facts === undefined) {
    const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined;
    facts =
      cert === undefined
        ? null
        : { subject: toHeaderValue(cert.subject.split('\n').join(',')), fingerprint: cert.fingerprint256.replaceAll(':', '').toLowerCase() };
    factsBySocket.set(socket, facts);
  }
  return facts ?? undefined;
}

/**
 * `listeners[].tls.forwardClientCert`: a stage that tells the upstream who the (verified) client
 * is. Client-sent copies of these headers are stripped on every route of every listener (plan.ts).
 */
export function compileClientCertForwarding(
  cfg: ListenerTlsConfig['forwardClientCert'],
): { readonly stage: Stage } | undefined {
  if (cfg === undefined || (cfg.subject === undefined && cfg.fingerprint === undefined)) return undefined;
  const { subject, fingerprint } = cfg;
  return {
    stage: function clientCert(ex) {
      const facts = clientCertFacts(ex.req.socket as TLSSocket);
      if (facts === undefined) return undefined;
      if (subject !== undefined) ex.setUpstreamHeader(subject, facts.subject);
      if (fingerprint !== undefined) ex.setUpstreamHeader(fingerprint, facts.fingerprint);
      return undefined;
    },
  };
}
