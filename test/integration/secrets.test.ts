import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { createPki, type TestPki } from '../helpers/certs.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { makeKey, sign, startJwksServer } from '../helpers/jwks.js';
import { echo, startUpstream } from '../helpers/upstream.js';

/** Captures every byte posted to it: an OTLP/HTTP collector stand-in whose bodies are grepped. */
async function startCollector() {
  const bodies: Buffer[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/json' }).end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, text: () => Buffer.concat(bodies).toString('latin1') };
}

let pki: TestPki;
beforeAll(() => {
  pki = createPki();
});

describe('secrets', () => {
  it('never appear in the access log, app log, spans, metrics, /admin/config, reload errors or error answers', async () => {
    const SECRETS = {
      admin: 'adm-Zq8uP1wK3',
      clientSecret: 'cs-Lm2Nb4Vc6',
      headerValue: 'hv-Rt5Yu7Io9',
      accessToken: 'at-Qw1Er3Ty5',
      otlpHeader: 'otlp-Kj8Hg6Fd4',
    };
    const tlsKeyBody = readFileSync(pki.server.key, 'utf8').split('\n')[1]!; // a line of the key's base64

    const idp = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        // the refusal echoes the secret back, as careless servers do: gatehouse must not repeat it
        if (body.includes('scope=refuse')) res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_client', error_description: `secret ${SECRETS.clientSecret} is wrong` }));
        else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: SECRETS.accessToken, token_type: 'Bearer', expires_in: 3600 }));
      });
    });
    idp.listen(0, '127.0.0.1');
    await once(idp, 'listening');
    onCleanup(() => new Promise<void>((r) => idp.close(() => r())));
    const tokenUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}/token`;

    const collector = await startCollector();
    const key = await makeKey('k1', 'RS256');
    const jwks = await startJwksServer([key]);
    const up = await startUpstream((req, res) => {
      res.writeHead(req.url!.endsWith('/deny') ? 401 : 200, { 'content-type': 'text/plain' }).end('ok');
    });
    const tlsUp = await startUpstream(echo, { tls: { cert: pki.server.certPem, key: pki.server.keyPem } });
    const env = {
      ADMIN: SECRETS.admin,
      CS: SECRETS.clientSecret,
      HV: SECRETS.headerValue,
      OTLP: SECRETS.otlpHeader,
    };
    const yaml = (extra = '') => `
version: 1
listeners:
  - { name: in, address: 127.0.0.1:0 }
  - { name: tls, address: 127.0.0.1:0, tls: { cert: ${pki.server.cert}, key: ${pki.server.key} } }
admin: { address: 127.0.0.1:0, token: "\${env:ADMIN}" }
telemetry:
  serviceName: secrets-test
  traces: { endpoint: ${collector.url}, sampleRatio: 1, headers: { x-api-key: "\${env:OTLP}" } }
upstreams:
  oauth: { endpoints: [${up.url}], credentials: { oauth2: { tokenUrl: ${tokenUrl}, clientId: store, clientSecret: "\${env:CS}" } } }
  refused: { endpoints: [${up.url}], credentials: { oauth2: { tokenUrl: ${tokenUrl}, clientId: store, clientSecret: "\${env:CS}", scopes: [refuse] } } }
  keyed: { endpoints: [${up.url}], credentials: { header: { name: x-api-key, value: "\${env:HV}" } } }
  badtls: { endpoints: [${tlsUp.url}] }
routes:
  - { name: jwt, listener: in, match: { pathPrefix: /jwt }, upstream: keyed, jwt: { jwksUri: ${jwks.jwksUri}, audiences: [store] } }
  - { name: oauth, listener: in, match: { pathPrefix: /oauth }, upstream: oauth }
  - { name: refused, listener: in, match: { pathPrefix: /refused }, upstream: refused }
  - { name: tlsfail, listener: in, match: { pathPrefix: /tlsfail }, upstream: badtls }
  - { name: keyed, listener: tls, match: { pathPrefix: / }, upstream: keyed }
${extra}`;
    const g = await startGatehouse(yaml(), { env });
    const captured: string[] = [];
    const keep = async (p: Promise<{ status: number; headers: unknown; text: string }>) => {
      const r = await p;
      captured.push(JSON.stringify(r.headers), r.text);
      return r;
    };

    const good = await sign(key, { aud: 'store', sub: 'alice' });
    const expired = await sign(key, { aud: 'store', exp: Math.floor(Date.now() / 1000) - 120 });
    const wrongAud = await sign(key, { aud: 'other' });
    expect((await keep(g.fetch('in', '/jwt/a', { headers: { authorization: `Bearer ${good}` } }))).status).toBe(200);
    expect((await keep(g.fetch('in', '/jwt/a', { headers: { authorization: `Bearer ${expired}` } }))).status).toBe(401);
    expect((await keep(g.fetch('in', '/jwt/a', { headers: { authorization: `Bearer ${wrongAud}` } }))).status).toBe(401);
    expect((await keep(g.fetch('in', '/jwt/a', { headers: { authorization: `Bearer ${good}x` } }))).status).toBe(401);
    expect((await keep(g.fetch('in', '/oauth/a'))).status).toBe(200);
    expect((await keep(g.fetch('in', '/oauth/deny'))).status).toBe(401); // refresh on 401, replayed, still 401
    expect((await keep(g.fetch('in', '/refused/a'))).status).toBe(502);
    expect((await keep(g.fetch('in', '/tlsfail/a'))).status).toBe(502);
    expect((await keep(request(g.admin('/admin/config'), { headers: { authorization: `Bearer ${SECRETS.admin}` } }))).status).toBe(200);
    expect((await keep(request(g.admin('/admin/config'), { headers: { authorization: 'Bearer wrong' } }))).status).toBe(401);
    expect((await keep(request(g.admin('/metrics')))).status).toBe(200);

    // a rejected reload whose errors point at secret-bearing keys
    g.write(`${yaml()}\n`.replace(`clientSecret: "\${env:CS}" } } }\n  refused`, `clientSecret: 12345 } } }\n  refused`).replace('"${env:ADMIN}"', `"${SECRETS.admin}", tokn: 1`));
    const reload = await keep(request(g.admin('/admin/reload'), { method: 'POST', headers: { authorization: `Bearer ${SECRETS.admin}` } }));
    expect(reload.status).toBe(400);
    expect(reload.text).toContain('clientSecret');

    await g.stop(); // flushes spans to the collector and the logs
    await eventually(() => collector.text().includes('secrets-test'));
    const outputs = {
      accessLog: g.accessLog.all,
      appLog: g.log.all,
      spans: collector.text(),
      answers: captured.join('\n'),
    };
    // sanity: each output really captured this traffic
    expect(outputs.accessLog).toContain('"route":"jwt"');
    expect(outputs.appLog).toContain('OAuth2 token fetch failed');
    // span events are named as in src (read back from what the exporter sent)
    for (const event of ['gatehouse.jwt', 'gatehouse.auth.result', 'gatehouse.tls.failure', 'gatehouse.credentials.token_fetched', 'gatehouse.credentials.token_failed', 'gatehouse.credentials.refreshed_on_401']) {
      expect(outputs.spans).toContain(event);
    }
    expect(outputs.answers).toContain('"version"');
    expect(outputs.answers).toContain('gatehouse_auth_decisions_total');

    const forbidden = { ...SECRETS, tlsKeyBody, jwtSignature: good.split('.')[2]!, jwtPayload: expired.split('.')[1]! };
    for (const [where, text] of Object.entries(outputs)) {
      for (const [name, secret] of Object.entries(forbidden)) {
        expect(text.includes(secret), `${name} found in ${where}`).toBe(false);
      }
    }
  });
});
