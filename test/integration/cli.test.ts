import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { onCleanup } from '../helpers/cleanup.js';
import { eventually, request } from '../helpers/http.js';
import { runCli, spawnGatehouse, writeConfig } from '../helpers/process.js';
import { delay, echo, reply, stall, startUpstream } from '../helpers/upstream.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const valid = (upstream = 'http://127.0.0.1:3000', extra = '') => `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { endpoints: [${upstream}] } }
routes: [{ name: api, listener: in, match: { pathPrefix: / }, upstream: app }]
${extra}`;

describe('gatehouse validate', () => {
  it('exits 0 for a valid config and says so on stdout', async () => {
    const file = writeConfig(valid());
    const r = await runCli(['validate', '-c', file]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(`${file}: ok (1 listeners, 1 upstreams, 1 routes)\n`);
  });

  it('exits 1 and prints every problem with file:line:col on stderr, secrets masked', async () => {
    const file = writeConfig(`version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  store:
    endpoints: [http://127.0.0.1:3000]
    conectTimeout: 1s
    connectTimeout: \${env:CT}
routes:
  - name: r
    listener: in
    upstream: store
    timeout: three
`);
    const r = await runCli(['validate', '-c', file], { env: { PATH: process.env.PATH, CT: 'secret-ct-value' } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual([
      `${file}:6:5 upstreams.store.conectTimeout: unknown key (did you mean connectTimeout?)`,
      `${file}:7:21 upstreams.store.connectTimeout: must be a duration such as 250ms, 2s, 1m or 1h (got ***)`,
      `${file}:12:14 routes[0](r).timeout: must be a duration such as 250ms, 2s, 1m or 1h (got "three")`,
    ]);
  });

  it('takes the file as a positional argument, and never checks another one instead', async () => {
    const good = writeConfig(valid());
    expect(await runCli(['validate', good])).toMatchObject({ code: 0, stdout: `${good}: ok (1 listeners, 1 upstreams, 1 routes)\n` });
    const bad = writeConfig(valid().replace('pathPrefix: /', 'pathPrefix: nope'));
    // $GATEHOUSE_CONFIG names a valid file: the positional one is the one checked
    const r = await runCli(['validate', bad], { env: { PATH: process.env.PATH, GATEHOUSE_CONFIG: good } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${bad}:5:58 routes[0](api).match.pathPrefix: must start with / (got "nope")`);
  });

  it('refuses extra positionals, two config files and unknown options with exit 2 and the usage', async () => {
    const file = writeConfig(valid());
    for (const args of [
      ['validate', file, 'other.yaml'],
      ['validate', '-c', file, 'other.yaml'],
      ['run', file, 'extra'],
      ['validate', '--config-file', file],
    ]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^gatehouse: .+\n\ngatehouse .*\n\nUsage:\n/);
    }
  });

  it('validates a production config without its secrets with --env-optional, listing what it skipped', async () => {
    const prod = `version: 1
listeners:
  - name: in
    address: 127.0.0.1:0
    tls: { cert: /etc/gatehouse/tls/server.crt, key: "\${file:/run/secrets/gatehouse-tls.key}" }
admin: { address: 127.0.0.1:0, token: "\${env:ADMIN_TOKEN}" }
upstreams:
  store: { endpoints: ["\${env:STORE_URL}"] }
  stripe: { endpoints: [https://api.stripe.com], credentials: { header: { name: authorization, value: "Bearer \${env:STRIPE_KEY}" } } }
routes:
  - { name: hooks, listener: in, upstream: store, match: { path: /hooks }, webhook: { provider: standard, secret: "\${env:WH_SECRET}" } }
  - { name: pay, listener: in, upstream: stripe }
`;
    const file = writeConfig(prod);
    expect((await runCli(['validate', file])).code).toBe(1); // without the flag, every missing secret is a problem
    const r = await runCli(['validate', '--env-optional', file]);
    expect(r.stdout).toBe(`${file}: ok (1 listeners, 2 upstreams, 2 routes; 6 values not checked (--env-optional))\n`);
    expect(r.stderr.trim().split('\n')).toEqual([
      `${file}:5:18 listeners[0].tls.cert: not checked: cannot read certificate file /etc/gatehouse/tls/server.crt (ENOENT)`,
      `${file}:5:54 listeners[0].tls.key: not checked: file /run/secrets/gatehouse-tls.key does not exist`,
      `${file}:6:39 admin.token: not checked: environment variable ADMIN_TOKEN is not set`,
      `${file}:8:24 upstreams.store.endpoints[0]: not checked: environment variable STORE_URL is not set`,
      `${file}:9:103 upstreams.stripe.credentials.header.value: not checked: environment variable STRIPE_KEY is not set`,
      `${file}:11:115 routes[0](hooks).webhook.secret: not checked: environment variable WH_SECRET is not set`,
    ]);
    expect(r.code).toBe(0);

    // everything else is still checked: a typo fails, with the skipped values listed too
    const typo = await runCli(['validate', '--env-optional', writeConfig(prod.replace('upstream: stripe }', 'upstream: strpie, timeout: soon }'))]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/routes\[1\]\(pay\)\.upstream: unknown upstream "strpie"/);
    expect(typo.stderr).toMatch(/routes\[1\]\(pay\)\.timeout: must be a duration/);
    expect(typo.stderr).toContain('admin.token: not checked: environment variable ADMIN_TOKEN is not set');
    expect((await runCli(['run', '--env-optional', file])).code).toBe(2);
  });

  it('uses $GATEHOUSE_CONFIG when no -c is given, and reports a missing file', async () => {
    const file = writeConfig(valid());
    expect((await runCli(['validate'], { env: { PATH: process.env.PATH, GATEHOUSE_CONFIG: file } })).code).toBe(0);
    const missing = await runCli(['validate', '-c', '/nonexistent/gh.yaml']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('/nonexistent/gh.yaml:1:1 (root): cannot read config file (ENOENT)\n');
  });
});

describe('gatehouse run', () => {
  it('refuses to start on an invalid config with exit 1', async () => {
    const file = writeConfig(valid().replace('pathPrefix: /', 'pathPrefix: nope'));
    const r = await runCli(['run', '-c', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('refusing to start, the config is invalid');
    expect(r.stderr).toContain(`${file}:5:58 routes[0](api).match.pathPrefix: must start with / (got "nope")`);
  });

  it('exits 1 with a clear message when a listener cannot bind', async () => {
    const up = await startUpstream(reply(200, 'x'));
    const file = writeConfig(valid(up.url).replace('address: 127.0.0.1:0 }]', `address: 127.0.0.1:${up.port} }]`));
    const r = await runCli(['run', '-c', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`cannot start: cannot listen on 127\\.0\\.0\\.1:${up.port} for listener 'in': .*EADDRINUSE`));
  });

  it('reloads on SIGHUP, re-reading the files the config names (a rotated secret)', async () => {
    const up = await startUpstream(echo);
    // only the referenced file changes, so the file watcher has nothing to see: this is SIGHUP's doing
    const g = await spawnGatehouse(valid(up.url).replace('upstream: app }', 'upstream: app, headers: { request: { set: { x-api-key: "${file:api-key}" } } } }'), {
      files: { 'api-key': 'key-one\n' },
    });
    expect((await request(g.url('in') + '/x')).json().headers['x-api-key']).toBe('key-one');
    writeFileSync(join(dirname(g.file), 'api-key'), 'key-two\n');
    g.child.kill('SIGHUP');
    await eventually(async () => (await request(g.url('in') + '/x')).json().headers['x-api-key'] === 'key-two', 5_000, 50);
    // the log line is written asynchronously (pino): it may trail the new plan's first answer
    await eventually(() => g.logLines().some((l) => l.msg === 'config reloaded'));
    expect(g.logLines().find((l) => l.msg === 'config reloaded')).toMatchObject({ trigger: 'signal', version: 2 });
  });

  it('drains on SIGTERM: /readyz 503, new connections refused, the slow request completes, exit 0', async () => {
    const slow = await startUpstream(delay(1_000, reply(200, 'slow and complete')));
    const g = await spawnGatehouse(valid(slow.url, 'shutdown: { drainTimeout: 10s }'));
    const inFlight = request(g.url('in') + '/slow');
    await eventually(() => slow.received.length === 1);
    g.child.kill('SIGTERM');
    await eventually(async () => (await request(g.admin('/readyz'))).status === 503, 2_000, 20);
    await eventually(
      () =>
        request(g.url('in') + '/new').then(
          () => false,
          (err: Error) => /ECONNREFUSED/.test(err.message),
        ),
      2_000,
      20,
    );
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.text).toBe('slow and complete');
    expect(await g.exited).toEqual({ code: 0, signal: null });
    const msgs = g.logLines().map((l) => l.msg);
    expect(msgs).toContain('draining requests in flight');
    expect(msgs.at(-1)).toBe('gatehouse stopped');
    expect(g.accessLog().at(-1)).toMatchObject({ path: '/slow', status: 200 }); // flushed before exit
  });

  it('exits at once on a second SIGTERM while draining, with 143', async () => {
    const stuck = await startUpstream(stall);
    const g = await spawnGatehouse(valid(stuck.url, 'shutdown: { drainTimeout: 30s }'));
    void request(g.url('in') + '/stuck').catch(() => undefined);
    await eventually(() => stuck.received.length === 1);
    g.child.kill('SIGTERM');
    await eventually(() => g.log().includes('draining requests in flight'), 3_000, 20);
    const second = performance.now();
    g.child.kill('SIGTERM');
    expect(await g.exited).toEqual({ code: 143, signal: null });
    expect(performance.now() - second).toBeLessThan(2_000);
    expect(g.log()).toContain('second signal: exiting without waiting for the drain');
  });

  it('flushes spans for at most 2 s at shutdown when the collector takes connections and never answers', async () => {
    const blackhole = createServer(() => {}); // accepts, reads, never answers
    blackhole.listen(0, '127.0.0.1');
    await once(blackhole, 'listening');
    onCleanup(() => {
      blackhole.closeAllConnections();
      blackhole.close();
    });
    const collector = `http://127.0.0.1:${(blackhole.address() as AddressInfo).port}/v1/traces`;
    const up = await startUpstream(reply(200, 'ok'));
    const g = await spawnGatehouse(valid(up.url, `telemetry: { traces: { endpoint: ${collector} } }`));
    for (let i = 0; i < 5; i++) expect((await request(g.url('in') + '/traced')).status).toBe(200);
    const stopping = performance.now();
    g.child.kill('SIGTERM');
    expect(await g.exited).toEqual({ code: 0, signal: null });
    expect(performance.now() - stopping).toBeLessThan(4_000);
    expect(g.log()).toContain('telemetry not flushed in time');
  });

  it('stops on SIGINT with exit 0 when idle', async () => {
    const g = await spawnGatehouse(valid());
    g.child.kill('SIGINT');
    expect(await g.exited).toEqual({ code: 0, signal: null });
  });
});

describe('gatehouse --version and --help', () => {
  it('prints the version', async () => {
    expect(await runCli(['--version'])).toEqual({ code: 0, stdout: `gatehouse ${VERSION}\n`, stderr: '' });
  });

  it('prints usage for --help, and exits 2 on an unknown command or option', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^gatehouse .*\n\nUsage:\n/);
    expect(help.stdout).toContain('gatehouse validate [FILE | -c FILE]');
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    expect((await runCli(['--bogus'])).code).toBe(2);
  });
});
