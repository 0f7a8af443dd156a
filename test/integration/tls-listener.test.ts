import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { createPki, type TestPki } from '../helpers/certs.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { eventually } from '../helpers/http.js';
import { sample, scrape } from '../helpers/metrics.js';
import { sendRaw, statusOf } from '../helpers/raw.js';
import { echo, startUpstream } from '../helpers/upstream.js';

/*
 * SPEC §3.1, TLS listeners, with real handshakes: an openssl-made PKI, Node's TLS client and the
 * openssl s_client binary.
 */

let pki: TestPki;
/** An RSA server certificate: cipher tests need RSA key exchange to be possible at all. */
let rsa: { cert: string; key: string };
beforeAll(() => {
  pki = createPki();
  const cert = join(pki.dir, 'rsa.crt');
  const key = join(pki.dir, 'rsa.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  rsa = { cert, key };
});

async function tlsListener(tls: string, limits = ''): Promise<{ g: TestGatehouse; port: number }> {
  const up = await startUpstream(echo);
  const g = await startGatehouse(`
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, tls: ${tls} ${limits ? `, limits: ${limits}` : ''} }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`);
  return { g, port: g.gh.listenerAddress('in')!.port };
}

/** One TLS handshake: resolves with the negotiated cipher, rejects with the handshake error. */
function handshake(port: number, options: { ciphers?: string; maxVersion?: 'TLSv1.2' | 'TLSv1.3'; cert?: string; key?: string } = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...options }, () => resolve(socket));
    socket.on('error', reject);
  });
}

describe('TLS listeners', () => {
  it('closes connections that do not finish a handshake within limits.handshakeTimeout, silent or half-way (T1)', async () => {
    const { g, port } = await tlsListener(`{ cert: ${pki.server.cert}, key: ${pki.server.key} }`, '{ handshakeTimeout: 1s }');
    const sockets: { socket: Socket; closedAt: number }[] = [];
    const opened = performance.now();
    for (let i = 0; i < 40; i++) {
      const socket = tcpConnect(port, '127.0.0.1');
      const entry = { socket, closedAt: 0 };
      socket.on('error', () => {});
      socket.on('close', () => (entry.closedAt = performance.now() - opened));
      // half send nothing, half the first bytes of a ClientHello and then nothing
      if (i % 2 === 1) socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
      sockets.push(entry);
    }
    await new Promise((r) => setTimeout(r, 400));
    expect(sockets.filter((s) => s.closedAt > 0)).toHaveLength(0); // all half-open before the timeout
    await eventually(() => sockets.every((s) => s.closedAt > 0), 5_000);
    expect(Math.max(...sockets.map((s) => s.closedAt))).toBeLessThan(3_000);
    expect(Math.min(...sockets.map((s) => s.closedAt))).toBeGreaterThanOrEqual(900);
    // the listener still serves, and the stalled handshakes were counted
    const ok = await handshake(port);
    ok.destroy();
    await eventually(async () => (sample(await scrape(g.admin('/metrics')), 'gatehouse_tls_handshake_failures_total', { listener: 'in', reason: 'handshake_timeout' }) ?? 0) >= 20);
  });

  it('answers plain HTTP sent to the TLS port with a plaintext 400, as nginx does (T9)', async () => {
    const { port } = await tlsListener(`{ cert: ${pki.server.cert}, key: ${pki.server.key} }`);
    const { text } = await sendRaw(port, ['GET / HTTP/1.1\r\nHost: shop\r\n\r\n']);
    expect(statusOf(text)).toBe(400);
    expect(text).toContain('gatehouse-error: bad_request');
    expect(text).toContain('plain HTTP request was sent to an HTTPS port');
  });

  it('offers TLS 1.2 only ECDHE with AEAD by default: no RSA key exchange, no CBC, no SHA-1 (T5)', async () => {
    const { g, port } = await tlsListener(`{ cert: ${rsa.cert}, key: ${rsa.key} }`);
    for (const weak of ['AES128-SHA', 'AES256-GCM-SHA384', 'ECDHE-RSA-AES128-SHA', 'ECDHE-RSA-AES256-SHA384', 'DHE-RSA-AES128-GCM-SHA256']) {
      await expect(handshake(port, { maxVersion: 'TLSv1.2', ciphers: weak }), weak).rejects.toThrow();
    }
    const strong = await handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' });
    expect(strong.getCipher().name).toBe('ECDHE-RSA-AES128-GCM-SHA256');
    strong.destroy();
    const tls13 = await handshake(port);
    expect(tls13.getProtocol()).toBe('TLSv1.3');
    tls13.destroy();
    const text = await scrape(g.admin('/metrics'));
    expect(sample(text, 'gatehouse_tls_handshake_failures_total', { listener: 'in', reason: 'no_shared_cipher' })).toBeGreaterThanOrEqual(5);
  });

  it('takes tls.ciphers instead of the default, and refuses a list that names no cipher', async () => {
    const { port } = await tlsListener(`{ cert: ${rsa.cert}, key: ${rsa.key}, ciphers: "AES128-SHA" }`);
    const legacy = await handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' });
    expect(legacy.getCipher().name).toBe('AES128-SHA');
    legacy.destroy();
    await expect(tlsListener(`{ cert: ${rsa.cert}, key: ${rsa.key}, ciphers: "NOT-A-CIPHER" }`)).rejects.toThrow(/listeners\[0\]\.tls\.ciphers: must be an OpenSSL cipher list/);
  });

  it('refuses client-initiated renegotiation on TLS 1.2 (T7)', async () => {
    const { port } = await tlsListener(`{ cert: ${pki.server.cert}, key: ${pki.server.key} }`);
    // openssl s_client renegotiates when it reads a line with R
    const client = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-servername', 'localhost'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    client.stdout.on('data', (c: Buffer) => (out += c.toString()));
    client.stderr.on('data', (c: Buffer) => (out += c.toString()));
    await eventually(() => out.includes('Verify return code') || out.includes('Verification'), 5_000);
    client.stdin.write('R\n');
    await eventually(() => out.includes('RENEGOTIATING'), 5_000);
    client.stdin.write('GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n');
    await eventually(() => /no renegotiation/i.test(out) || out.includes('HTTP/1.1 200'), 5_000);
    client.kill();
    expect(out).toMatch(/no renegotiation/i);
    expect(out).not.toContain('HTTP/1.1 200');
  });

  it('logs and counts a refused mTLS client by reason (T8)', async () => {
    const { g, port } = await tlsListener(`{ cert: ${pki.server.cert}, key: ${pki.server.key}, clientCa: ${pki.ca.cert} }`);
    await expect(
      handshake(port, { maxVersion: 'TLSv1.2' }).then(async (s) => {
        // TLS 1.2 refuses during the handshake; keep the socket a moment in case it is refused right after
        await new Promise((r) => setTimeout(r, 200));
        s.destroy();
      }),
    ).rejects.toThrow();
    await eventually(() => g.log.json.some((l) => l.msg === 'TLS handshake refused' && l.listener === 'in'));
    const line = g.log.json.find((l) => l.msg === 'TLS handshake refused')!;
    expect(line.reason).toMatch(/certificate/);
    const text = await scrape(g.admin('/metrics'));
    expect(sample(text, 'gatehouse_tls_handshake_failures_total', { listener: 'in', reason: line.reason })).toBe(1);
  });

  it('serves a rotated certificate given as ${file:} once the file changes (T11)', async () => {
    const up = await startUpstream(echo);
    const first = pki.issue('inline-first');
    const cert = join(pki.dir, 'inline.crt');
    const key = join(pki.dir, 'inline.key');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    const g = await startGatehouse(
      `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0, tls: { cert: "\${file:${cert}}", key: "\${file:${key}}" } }]
upstreams: { app: { endpoints: [${up.url}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`,
      { watch: true },
    );
    const port = g.gh.listenerAddress('in')!.port;
    const serial = async () => {
      const s = await handshake(port);
      const n = s.getPeerCertificate().serialNumber;
      s.destroy();
      return n;
    };
    const before = await serial();
    const next = pki.issue('inline-next');
    writeFileSync(key, readFileSync(next.key));
    writeFileSync(cert, readFileSync(next.cert));
    await eventually(async () => (await serial()) !== before, 8_000, 200);
  });
});
