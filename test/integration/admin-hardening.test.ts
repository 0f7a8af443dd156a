import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { rawExchange } from '../helpers/raw.js';
import { request } from '../helpers/http.js';
import { echo, startUpstream } from '../helpers/upstream.js';

const base = (upstream: string, admin: string, path = '/') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [${upstream}] } }
routes: [{ name: api, listener: in, match: { pathPrefix: ${path} }, upstream: app }]
admin: ${admin}
`;

describe('admin API hardening (SPEC §3.1)', () => {
  it('refuses to start with the admin API on a non-loopback address and no token, unless admin.insecure says so', async () => {
    const up = await startUpstream(echo);
    await expect(startGatehouse(base(up.url, '{ address: 0.0.0.0:0 }'))).rejects.toThrow(
      /admin\.address: is reachable from other machines: set admin\.token, or admin\.insecure: true/,
    );
    await expect(startGatehouse(base(up.url, '{ address: ":0" }'))).rejects.toThrow(/admin\.address: is reachable from other machines/);
    // a token, or an explicit opt-out, makes it valid
    const withToken = await startGatehouse(base(up.url, '{ address: 0.0.0.0:0, token: adm1n-t0ken }'));
    expect((await request(withToken.admin('/healthz'))).status).toBe(200);
    const insecure = await startGatehouse(base(up.url, '{ address: 0.0.0.0:0, insecure: true }'));
    expect((await request(insecure.admin('/admin/config'))).status).toBe(200);
  });

  it('without a token, answers 403 forbidden to browser requests: Origin, Sec-Fetch-Site cross-site, a foreign Host (CSRF, DNS rebinding)', async () => {
    const up = await startUpstream(echo);
    const yaml = base(up.url, '{ address: 127.0.0.1:0 }');
    const g = await startGatehouse(yaml);
    g.write(yaml.replace('pathPrefix: /', 'pathPrefix: /v2')); // what a forged reload would switch to
    const port = g.gh.adminAddress.port;

    const forged: Record<string, string>[] = [
      { origin: 'https://evil.example' },
      { origin: 'null' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { host: `evil.example:${port}` }, // DNS rebinding: the attacker's name resolved to 127.0.0.1
      { host: 'rebind.127.0.0.1.nip.io' },
    ];
    for (const headers of forged) {
      const res = await request(g.admin('/admin/reload'), { method: 'POST', headers });
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.headers['gatehouse-error']).toBe('forbidden');
      expect(res.json()).toMatchObject({ code: 'forbidden', status: 403 });
    }
    // nothing was reloaded: the first config still serves
    expect((await g.fetch('in', '/x')).status).toBe(200);
    expect((await request(g.admin('/admin/config'))).json().version).toBe(1);

    // curl, scripts and probes: no Origin, the address they connect to (or a loopback name) as Host
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST.', `gatehouse.localhost:${port}`, '[::1]']) {
      expect((await request(g.admin('/admin/upstreams'), { headers: { host } })).status, host).toBe(200);
    }
    // HTTP/1.0 without Host is no browser
    expect(await rawExchange(port, 'GET /admin/upstreams HTTP/1.0\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
    // /healthz, /readyz and /metrics stay open to probes and scrapers that name the pod's address
    expect((await request(g.admin('/metrics'), { headers: { host: `10.1.2.3:${port}` } })).status).toBe(200);

    const ok = await request(g.admin('/admin/reload'), { method: 'POST' });
    expect(ok.json()).toEqual({ version: 2, changed: true });
  });

  it('with a token, the token decides, and the Authorization scheme is case-insensitive (RFC 9110 §11.1)', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(up.url, '{ address: 127.0.0.1:0, token: adm1n-t0ken }'));
    for (const authorization of ['Bearer adm1n-t0ken', 'bearer adm1n-t0ken', 'BEARER adm1n-t0ken']) {
      expect((await request(g.admin('/admin/config'), { headers: { authorization } })).status, authorization).toBe(200);
    }
    for (const authorization of ['bearer', 'bearer adm1n-t0ke', 'Basic adm1n-t0ken', 'bearer adm1n-t0ken extra']) {
      expect((await request(g.admin('/admin/config'), { headers: { authorization } })).status, authorization).toBe(401);
    }
    expect((await request(g.admin('/admin/config'), { headers: { authorization: 'Bearer adm1n-t0ken', origin: 'https://ops.example' } })).status).toBe(200);
  });
});
