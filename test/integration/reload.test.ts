import { once } from 'node:events';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { startGatehouse as startFromFile } from '../../src/gatehouse.js';
import { LineSink, startGatehouse } from '../helpers/gatehouse.js';
import { eventually, request } from '../helpers/http.js';
import { closedPort, delay, reply, startUpstream } from '../helpers/upstream.js';

const config = (upstreamUrl: string, prefix = '/', listeners = '[{ name: in, address: 127.0.0.1:0 }]', routes = '') => `
version: 1
listeners: ${listeners}
upstreams: { app: { endpoints: [${upstreamUrl}] } }
routes:
  - { name: api, listener: in, match: { pathPrefix: ${prefix} }, upstream: app }
${routes}`;

const reloadsMetric = async (admin: string, result: string) => {
  const text = (await request(admin)).text;
  return Number(new RegExp(`^gatehouse_config_reloads_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
};

describe('reload', () => {
  it('applies a valid config and counts the success', async () => {
    const a = await startUpstream(reply(200, 'a'));
    const b = await startUpstream(reply(200, 'b'));
    const g = await startGatehouse(config(a.url));
    expect((await g.fetch('in', '/x')).text).toBe('a');
    g.write(config(b.url));
    expect(await g.gh.reload('api')).toEqual({ ok: true, version: 2, changed: true });
    expect((await g.fetch('in', '/x')).text).toBe('b');
    expect(await reloadsMetric(g.admin('/metrics'), 'success')).toBe(1);
    expect(g.log.json.find((l) => l.msg === 'config reloaded')).toMatchObject({ version: 2 });
  });

  it('rejects an invalid config: the old one keeps serving, and the failure is logged and counted', async () => {
    const a = await startUpstream(reply(200, 'a'));
    const g = await startGatehouse(config(a.url));
    g.write(config(a.url).replace('pathPrefix: /', 'pathPrefix: nope'));
    const result = await g.gh.reload('api');
    expect(result).toEqual({ ok: false, errors: [`${g.file}:6:53 routes[0](api).match.pathPrefix: must start with / (got "nope")`] });
    expect((await g.fetch('in', '/x')).text).toBe('a');
    expect(g.gh.currentPlan().version).toBe(1);
    expect(await reloadsMetric(g.admin('/metrics'), 'failure')).toBe(1);
    expect(g.log.json.find((l) => l.msg?.startsWith('config reload rejected'))).toMatchObject({ errors: result.ok ? [] : result.errors });
  });

  it('reloads within 2 s when the file is written in place', async () => {
    const a = await startUpstream(reply(200, 'a'));
    const b = await startUpstream(reply(200, 'b'));
    const g = await startGatehouse(config(a.url), { watch: true });
    g.write(config(b.url));
    const started = performance.now();
    await eventually(async () => (await g.fetch('in', '/x')).text === 'b', 2_000, 50);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('reloads within 2 s when the file is replaced by rename, as Kubernetes ConfigMaps do', async () => {
    const a = await startUpstream(reply(200, 'a'));
    const b = await startUpstream(reply(200, 'b'));
    const g = await startGatehouse(config(a.url), { watch: true });
    const next = join(g.dir, '.next.yaml');
    writeFileSync(next, config(b.url) + `\nadmin: { address: 127.0.0.1:0 }\ndataDir: ${join(g.dir, 'data')}\nshutdown: { drainTimeout: 2s }\n`);
    renameSync(next, g.file);
    await eventually(async () => (await g.fetch('in', '/x')).text === 'b', 2_000, 50);
  });

  it('finishes requests in flight on the config they started with', async () => {
    const slow = await startUpstream(delay(600, reply(200, 'old')));
    const fresh = await startUpstream(reply(200, 'new'));
    const g = await startGatehouse(config(slow.url));
    const inFlight = g.fetch('in', '/x');
    await eventually(() => slow.received.length === 1);
    g.write(config(fresh.url));
    expect((await g.gh.reload('api')).ok).toBe(true);
    expect((await g.fetch('in', '/x')).text).toBe('new');
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.text).toBe('old');
    // the retired upstream's pool closed once its request was done
    await eventually(() => slow.sockets.size === 0);
  });

  it('keeps the upstream pool of an unchanged upstream across a reload', async () => {
    const a = await startUpstream(reply(200, 'a'));
    const g = await startGatehouse(config(a.url));
    await g.fetch('in', '/x');
    const before = g.gh.currentPlan().upstreams.get('app');
    g.write(config(a.url, '/v2'));
    await g.gh.reload('api');
    expect(g.gh.currentPlan().upstreams.get('app')).toBe(before);
  });

  it('binds listeners a reload adds and closes the ones it removes', async () => {
    const a = await startUpstream(reply(200, 'a'));
    const two = '[{ name: in, address: 127.0.0.1:0 }, { name: extra, address: 127.0.0.1:0 }]';
    const g = await startGatehouse(config(a.url));
    g.write(config(a.url, '/', two, '  - { name: side, listener: extra, match: { pathPrefix: / }, upstream: app }'));
    expect((await g.gh.reload('api')).ok).toBe(true);
    const extraUrl = g.url('extra');
    expect((await request(extraUrl + '/y')).text).toBe('a');

    g.write(config(a.url));
    expect((await g.gh.reload('api')).ok).toBe(true);
    expect(g.gh.listenerAddress('extra')).toBeUndefined();
    await expect(request(extraUrl + '/y')).rejects.toThrow(/ECONNREFUSED/);
    expect((await g.fetch('in', '/x')).text).toBe('a');
  });

  it('rejects a reload whose new listener cannot bind, keeping the old config', async () => {
    const a = await startUpstream(reply(200, 'a'));
    const g = await startGatehouse(config(a.url));
    const taken = g.gh.adminAddress.port;
    g.write(config(a.url, '/v2', `[{ name: in, address: 127.0.0.1:0 }, { name: clash, address: 127.0.0.1:${taken} }]`));
    const result = await g.gh.reload('api');
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.errors.join('\n')).toMatch(/cannot listen on 127\.0\.0\.1:\d+ for listener 'clash'/);
    expect((await g.fetch('in', '/x')).text).toBe('a');
    expect(await reloadsMetric(g.admin('/metrics'), 'failure')).toBe(1);
  });
});

describe('graceful shutdown', () => {
  it('turns /readyz 503 at once, refuses new connections, lets the request in flight finish, then stops', async () => {
    const slow = await startUpstream(delay(800, reply(200, 'done')));
    const g = await startGatehouse(config(slow.url) + 'shutdown: { drainTimeout: 10s }\n');
    const url = g.url('in');
    const inFlight = g.fetch('in', '/x');
    await eventually(() => slow.received.length === 1);
    const stopped = g.gh.shutdown();
    expect((await request(g.admin('/readyz'))).status).toBe(503);
    await expect(request(url + '/y')).rejects.toThrow(/ECONNREFUSED/);
    expect(await g.gh.reload('api')).toEqual({ ok: false, errors: ['gatehouse is shutting down'] });
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.text).toBe('done');
    expect(res.headers.connection).toBe('close');
    await stopped;
  });

  it('cuts requests still running when drainTimeout passes', async () => {
    const stuck = await startUpstream(delay(10_000, reply(200, 'late')));
    const g = await startGatehouse(config(stuck.url) + 'shutdown: { drainTimeout: 300ms }\n');
    const inFlight = g.fetch('in', '/x').then(
      (r) => `status ${r.status}`,
      (err: Error) => `error ${err.message}`,
    );
    await eventually(() => stuck.received.length === 1);
    const started = performance.now();
    await g.gh.shutdown();
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(await inFlight).toMatch(/^error /);
    expect(g.log.json.find((l) => l.msg?.startsWith('drain timeout passed'))).toMatchObject({ inFlight: 1 });
  });
});

describe('start', () => {
  it('releases the traffic listeners it bound when the admin listener cannot bind', async () => {
    const up = await startUpstream(reply(200, 'a'));
    const trafficPort = await closedPort();
    const dir = mkdtempSync(join(tmpdir(), 'gh-start-'));
    const file = join(dir, 'gatehouse.yaml');
    writeFileSync(
      file,
      config(up.url, '/', `[{ name: in, address: 127.0.0.1:${trafficPort} }]`) + `admin: { address: 127.0.0.1:${up.port} }\ndataDir: ${join(dir, 'data')}\n`,
    );
    const log = new LineSink();
    await expect(startFromFile({ configFile: file, env: {}, watch: false, logStream: log, accessLogStream: new LineSink() })).rejects.toThrow(
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${up.port} for the admin API`),
    );
    // the traffic port is free again
    const probe = createServer();
    probe.listen(trafficPort, '127.0.0.1');
    await once(probe, 'listening');
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  });
});
