import { execFileSync } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import '../helpers/cleanup.js';
import { request } from '../helpers/http.js';
import { spawnGatehouse } from '../helpers/process.js';
import { echo, reply, startUpstream } from '../helpers/upstream.js';

/*
 * SPEC §3.1 (F6): a reload reads and validates off the serving thread. These run the built CLI as
 * a child process, as a user does, so heap limits and a blocked event loop are the real ones.
 */

const config = (upstream: string, routes = '') => `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
upstreams: { app: { endpoints: [${upstream}] } }
routes:
${routes}  - { name: api, listener: in, match: { pathPrefix: / }, upstream: app }
`;

/** A valid config of `n` routes: megabytes of YAML that take the parser seconds. */
const manyRoutes = (n: number) =>
  Array.from(
    { length: n },
    (_, i) => `  - name: route-${i}
    listener: in
    match: { pathPrefix: /r${i}, methods: [GET, POST] }
    upstream: app
    timeout: 5s
    headers: { request: { set: { x-route: r${i} } } }
`,
  ).join('');

/** Replaces the config file at once (rename), as a ConfigMap update does. */
const replace = (file: string, yaml: string) => {
  writeFileSync(`${file}.next`, yaml);
  renameSync(`${file}.next`, file);
};

describe('reloading hostile or huge configs (F6, F9)', () => {
  it('keeps answering proxied requests promptly while a large config is read and validated', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await spawnGatehouse(config(up.url));
    const big = config(up.url, manyRoutes(5_000));
    expect(big.length).toBeGreaterThan(900_000);
    replace(g.file, big);
    const reloadStarted = performance.now();
    let slowestMs = 0;
    let answered = 0;
    while (!g.logLines().some((l) => l.msg === 'config reloaded' || l.msg?.startsWith('config reload'))) {
      if (performance.now() - reloadStarted > 90_000) throw new Error('the reload did not finish within 90 s');
      const started = performance.now();
      const res = await request(g.url('in') + '/x');
      slowestMs = Math.max(slowestMs, performance.now() - started);
      expect(res.status).toBe(200);
      answered++;
    }
    const reloadMs = performance.now() - reloadStarted;
    expect(g.logLines().find((l) => l.msg?.startsWith('config reload'))).toMatchObject({ msg: 'config reloaded', version: 2 });
    // Parsed on the serving thread, this config held every request for the whole reload (seconds);
    // now only compiling the validated config blocks it.
    console.log(`reload of ${(big.length / 1e6).toFixed(1)} MB took ${Math.round(reloadMs)} ms; ${answered} requests meanwhile, slowest ${Math.round(slowestMs)} ms`);
    expect(answered).toBeGreaterThan(10);
    expect(slowestMs).toBeLessThan(Math.max(1_000, reloadMs / 3));
    expect((await request(g.url('in') + '/r4999')).status).toBe(200);
  }, 120_000);

  it('refuses a config that would exhaust memory, located, and the process keeps serving', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await spawnGatehouse(config(up.url), { nodeArgs: ['--max-old-space-size=128'] });
    // half a megabyte of nesting that the YAML parser turns into hundreds of megabytes
    replace(g.file, `${config(up.url)}x: ${'['.repeat(300_000)}${']'.repeat(300_000)}\n`);
    const res = await request(g.admin('/admin/reload'), { method: 'POST' });
    expect(res.status).toBe(400);
    expect(res.json().errors).toEqual([expect.stringMatching(new RegExp(`^${g.file}:1:1 \\(root\\): needs more than \\d+ MB of memory to load; refused$`))]);
    expect((await request(g.url('in') + '/x')).status).toBe(200);
    expect((await request(g.admin('/healthz'))).status).toBe(200);
    expect(g.child.exitCode).toBe(null);
  }, 60_000);

  it('refuses ${file:} of a FIFO and of /dev/zero at once, and /healthz keeps answering', async () => {
    const up = await startUpstream(reply(200, 'ok'));
    const g = await spawnGatehouse(config(up.url));
    execFileSync('mkfifo', [join(g.dir, 'fifo')]);
    replace(g.file, config(up.url).replace('upstream: app }', 'upstream: app, headers: { request: { set: { a: "${file:fifo}", b: "${file:/dev/zero}" } } } }'));
    const started = performance.now();
    const res = await request(g.admin('/admin/reload'), { method: 'POST' });
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(res.status).toBe(400);
    expect(res.json().errors).toEqual([
      `${g.file}:6:105 routes[0](api).headers.request.set.a: cannot read file ${join(g.dir, 'fifo')} (not a regular file: a FIFO)`,
      `${g.file}:6:124 routes[0](api).headers.request.set.b: cannot read file /dev/zero (not a regular file: a character device)`,
    ]);
    expect((await request(g.admin('/healthz'))).status).toBe(200);
    expect((await request(g.url('in') + '/x')).status).toBe(200);
  });

  it('refuses a rotated ${file:} header value with a line break (F9), unquoted, and keeps sending the old one', async () => {
    const up = await startUpstream(echo);
    const g = await spawnGatehouse(config(up.url).replace('upstream: app }', 'upstream: app, headers: { request: { set: { x-api-key: "${file:api-key}" } } } }'), {
      files: { 'api-key': 'key-one\n' },
    });
    expect((await request(g.url('in') + '/x')).json().headers['x-api-key']).toBe('key-one');
    writeFileSync(join(g.dir, 'api-key'), 'key-two\r\nx-injected: 1\n');
    const res = await request(g.admin('/admin/reload'), { method: 'POST' });
    expect(res.status).toBe(400);
    expect(res.json().errors).toEqual([
      `${g.file}:6:113 routes[0](api).headers.request.set.x-api-key: must be a valid HTTP header value: no CR, LF, NUL or other control character, nothing beyond U+00FF`,
    ]);
    expect(res.text).not.toContain('key-two');
    const after = await request(g.url('in') + '/x');
    expect(after.status).toBe(200);
    expect(after.json().headers['x-api-key']).toBe('key-one');
    expect(after.json().headers['x-injected']).toBeUndefined();
  });
});
