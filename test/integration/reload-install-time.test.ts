import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse } from '../helpers/gatehouse.js';
import { request } from '../helpers/http.js';
import { echo, startUpstream } from '../helpers/upstream.js';

const config = (token: string, serviceName: string, upstream: string) => `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0, token: ${token} }
telemetry: { serviceName: ${serviceName} }
upstreams: { app: { endpoints: [${upstream}] } }
routes: [{ name: r, listener: in, match: { pathPrefix: / }, upstream: app }]
`;

const restartWarnings = (log: { json: any[] }) => log.json.filter((l) => String(l.msg).includes('take effect at the next restart'));

describe('reload of install-time sections', () => {
  it('applies a new admin.token at once, without a restart warning', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(config('first-token', 'svc', up.url));
    g.write(config('second-token', 'svc', up.url));
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect((await request(g.admin('/admin/config'), { headers: { authorization: 'Bearer second-token' } })).status).toBe(200);
    expect((await request(g.admin('/admin/config'), { headers: { authorization: 'Bearer first-token' } })).status).toBe(401);
    expect(restartWarnings(g.log)).toEqual([]);
  });

  it('warns that a telemetry change takes effect at the next restart', async () => {
    const up = await startUpstream(echo);
    const g = await startGatehouse(config('t', 'before', up.url));
    g.write(config('t', 'after', up.url));
    expect(await g.gh.reload('api')).toMatchObject({ ok: true, changed: true });
    expect(restartWarnings(g.log).map((l) => l.section)).toEqual(['telemetry']);
  });
});
