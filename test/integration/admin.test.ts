import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { request } from '../helpers/http.js';
import { echo, stall, startUpstream } from '../helpers/upstream.js';
import { eventually } from '../helpers/http.js';

const base = (upstreams: string, extra = '') => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
${upstreams}
routes:
  - { name: api, listener: in, match: { pathPrefix: / }, upstream: app }
${extra}`;

describe('admin API', () => {
  it('answers /healthz, /readyz and /metrics without a token', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(`  app: { endpoints: [${up.url}] }`, 'admin: { address: 127.0.0.1:0, token: adm1n-t0ken }'));
    expect(await request(g.admin('/healthz')).then((r) => [r.status, r.json()])).toEqual([200, { status: 'ok' }]);
    expect(await request(g.admin('/readyz')).then((r) => [r.status, r.json()])).toEqual([200, { status: 'ready' }]);
    expect((await request(g.admin('/metrics'))).status).toBe(200);
    expect((await request(g.admin('/nothing'))).status).toBe(404);
  });

  it('requires the bearer token for /admin/* when one is set', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(`  app: { endpoints: [${up.url}] }`, 'admin: { address: 127.0.0.1:0, token: adm1n-t0ken }'));
    for (const path of ['/admin/config', '/admin/upstreams']) {
      const none = await request(g.admin(path));
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
      expect((await request(g.admin(path), { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      expect((await request(g.admin(path), { headers: { authorization: 'Bearer adm1n-t0ken-longer' } })).status).toBe(401);
      expect((await request(g.admin(path), { headers: { authorization: 'Basic adm1n-t0ken' } })).status).toBe(401);
      expect((await request(g.admin(path), { headers: { authorization: 'Bearer adm1n-t0ken' } })).status).toBe(200);
    }
    expect((await request(g.admin('/admin/reload'), { method: 'POST' })).status).toBe(401);
  });

  it('shows the running config with secrets as ***, literal admin.token and ${env:} values alike', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(
      base(
        `  app: { endpoints: ["\${env:APP_URL}"] }`,
        `admin: { address: 127.0.0.1:0, token: literal-admin-secret }
telemetry: { serviceName: "svc-\${env:SVC}" }`,
      ),
      { env: { APP_URL: up.url, SVC: 'env-secret-value' } },
    );
    const res = await request(g.admin('/admin/config'), { headers: { authorization: 'Bearer literal-admin-secret' } });
    expect(res.status).toBe(200);
    expect(res.text).not.toContain('literal-admin-secret');
    expect(res.text).not.toContain('env-secret-value');
    expect(res.text).not.toContain(up.url);
    const view = res.json();
    expect(view.version).toBe(1);
    expect(view.config.admin.token).toBe('***');
    expect(view.config.telemetry.serviceName).toBe('***');
    expect(view.config.upstreams.app.endpoints).toEqual(['***']);
    expect(view.config.routes[0].name).toBe('api');
    expect(g.log.all).not.toContain('literal-admin-secret');
  });

  it('lists upstreams with breaker, in-flight and endpoint state in the documented shape (SPEC §9)', async () => {
    const a = await startUpstream(stall);
    const b = await startUpstream(echo);
    const g = await startGatehouse(base(`  app: { endpoints: [${a.url}, ${b.url}] }\n  other: { endpoints: ["${b.url}/base"] }`));
    const pending = g.fetch('in', '/slow'); // goes to the first endpoint and stalls there
    void pending.catch(() => {});
    await eventually(() => a.received.length === 1);
    const res = await request(g.admin('/admin/upstreams'));
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({
      upstreams: {
        app: {
          breaker: null, // no circuitBreaker configured: no breaker
          inFlight: 1,
          endpoints: [
            { url: a.url, healthy: true, ejected: false, inFlight: 1 },
            { url: b.url, healthy: true, ejected: false, inFlight: 0 },
          ],
        },
        other: {
          breaker: null,
          inFlight: 0,
          endpoints: [{ url: `${b.url}/base`, healthy: true, ejected: false, inFlight: 0 }],
        },
      },
    });
  });

  it('reloads on POST /admin/reload: 200 with the new version, 400 with file:line:col errors', async () => {
    const up = await startUpstream(echo);
    const yaml = base(`  app: { endpoints: [${up.url}] }`);
    const g = await startGatehouse(yaml);
    const same = await request(g.admin('/admin/reload'), { method: 'POST' });
    expect(same.status).toBe(200);
    expect(same.json()).toEqual({ version: 1, changed: false });

    g.write(yaml.replace('pathPrefix: /', 'pathPrefix: /v2'));
    const ok = await request(g.admin('/admin/reload'), { method: 'POST' });
    expect(ok.json()).toEqual({ version: 2, changed: true });
    expect((await g.fetch('in', '/x')).status).toBe(404);

    g.write(yaml.replace('pathPrefix: /', 'pathPrefix: /v3').replace('[{ name: in', '[{ nmae: in'));
    const bad = await request(g.admin('/admin/reload'), { method: 'POST' });
    expect(bad.status).toBe(400);
    expect(bad.json().errors).toEqual([
      `${g.file}:3:13 listeners[0].name: is required`,
      `${g.file}:3:15 listeners[0].nmae: unknown key (did you mean name?)`,
      `${g.file}:7:28 routes[0](api).listener: unknown listener "in" (defined: none)`,
    ]);
    expect((await g.fetch('in', '/v2/x')).status).toBe(200); // version 2 keeps serving
  });

  it('answers 404 for /metrics when metrics.prometheus is off', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(base(`  app: { endpoints: [${up.url}] }`, 'telemetry: { metrics: { prometheus: false } }'));
    expect((await request(g.admin('/metrics'))).status).toBe(404);
  });
});
