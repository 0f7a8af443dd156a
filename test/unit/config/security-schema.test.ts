import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/errors.js';
import { loadConfigText } from '../../../src/config/load.js';

const base = (extra: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  app:
    endpoints: [https://api.example.com]
${extra}`;

function problems(yaml: string): string[] {
  try {
    loadConfigText(yaml, 'g.yaml', { env: {} });
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

describe('security config', () => {
  it('never accepts HMAC or none as a JWT algorithm', () => {
    const out = problems(`${base('')}routes: [{ name: r, listener: in, upstream: app, jwt: { jwksUri: https://idp.example/jwks, algorithms: [HS256, none] } }]`);
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(/^g\.yaml:7:\d+ routes\[0\]\(r\)\.jwt\.algorithms\[0\]: must be one of RS256, .*; HMAC and none are never accepted \(got "HS256"\)/);
  });

  it('asks for a key source and refuses two', () => {
    expect(problems(`${base('')}routes: [{ name: r, listener: in, upstream: app, jwt: { audiences: [a] } }]`)[0]).toContain(
      'routes[0](r).jwt: needs jwksUri, jwks, or issuer (keys found by OIDC discovery)',
    );
    expect(problems(`${base('')}routes: [{ name: r, listener: in, upstream: app, jwt: { jwksUri: https://i/j, jwks: /nope.json } }]`).join('\n')).toContain(
      'use either jwksUri or jwks, not both',
    );
  });

  it('refuses plain http for keys and tokens except on loopback', () => {
    expect(problems(`${base('')}routes: [{ name: r, listener: in, upstream: app, jwt: { jwksUri: http://idp.example/jwks } }]`)[0]).toContain(
      'must be an https:// URL (http:// only on loopback)',
    );
    expect(problems(`${base('')}routes: [{ name: r, listener: in, upstream: app, jwt: { jwksUri: http://127.0.0.1:9/jwks } }]`)).toEqual([]);
    expect(
      problems(base('    credentials: { oauth2: { tokenUrl: http://auth.example/token, clientId: a, clientSecret: b } }'))[0],
    ).toMatch(/upstreams\.app\.credentials\.oauth2\.tokenUrl: must be an https:\/\/ URL/);
  });

  it('reports an unreadable certificate or key file at its position, without key material', () => {
    const out = problems(base('    tls: { ca: /no/such/ca.pem, cert: /no/such/c.pem, key: /no/such/k.pem }'));
    expect(out).toEqual([
      'g.yaml:7:16 upstreams.app.tls.ca: cannot read certificate file /no/such/ca.pem (ENOENT)',
      'g.yaml:7:39 upstreams.app.tls.cert: cannot read certificate file /no/such/c.pem (ENOENT)',
      'g.yaml:7:60 upstreams.app.tls.key: cannot read key file /no/such/k.pem (ENOENT)',
    ]);
    // documentation examples name production files: checkFiles: false skips only this check
    expect(() => loadConfigText(base('    tls: { ca: /no/such/ca.pem }'), 'g.yaml', { env: {}, checkFiles: false })).not.toThrow();
    const inline = problems(base('    tls: { key: "-----BEGIN PRIVATE KEY-----\\nc2VjcmV0LWtleS1ieXRlcw==\\n-----END PRIVATE KEY-----", cert: /no/c.pem }'));
    expect(inline.join('\n')).toContain('upstreams.app.tls.key: must be an unencrypted PEM private key');
    expect(inline.join('\n')).not.toContain('c2VjcmV0');
  });

  it('checks the files of credentials.oauth2.tls like an upstream tls block', () => {
    const out = problems(base('    credentials: { oauth2: { tokenUrl: https://a/t, clientId: c, clientSecret: s, tls: { ca: /no/such/ca.pem, key: /no/k.pem } } }'));
    expect(out).toEqual([
      expect.stringMatching(/^g\.yaml:7:\d+ upstreams\.app\.credentials\.oauth2\.tls\.cert: cert and key go together/),
    ]);
    expect(problems(base('    credentials: { oauth2: { tokenUrl: https://a/t, clientId: c, clientSecret: s, tls: { ca: /no/such/ca.pem } } }'))).toEqual([
      expect.stringMatching(/^g\.yaml:7:\d+ upstreams\.app\.credentials\.oauth2\.tls\.ca: cannot read certificate file \/no\/such\/ca\.pem \(ENOENT\)$/),
    ]);
  });

  it('wants exactly one credential kind, and tls only with an https endpoint', () => {
    expect(problems(base('    credentials: {}'))[0]).toContain('upstreams.app.credentials: set exactly one of header and oauth2');
    const httpOnly = `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [http://10.0.0.1], tls: { minVersion: TLSv1.3 } } }`;
    expect(problems(httpOnly)[0]).toContain('upstreams.app.tls: applies to https:// endpoints, and this upstream has none');
  });

  it('shows secret-bearing values as *** in errors and in the admin view', () => {
    const out = problems(base('    credentials: { header: { name: x-key, value: 12345 } }'));
    expect(out[0]).toContain('upstreams.app.credentials.header.value: must be a string (got ***)');
    const loaded = loadConfigText(base('    credentials: { oauth2: { tokenUrl: https://a/t, clientId: c, clientSecret: s3cr3t } }'), 'g.yaml', { env: {} });
    expect(JSON.stringify(loaded.redacted)).not.toContain('s3cr3t');
    expect(JSON.stringify(loaded.config)).not.toContain('s3cr3t');
  });
});
