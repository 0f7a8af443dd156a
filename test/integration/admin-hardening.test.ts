import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
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
});
