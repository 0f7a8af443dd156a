import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/errors.js';
import { fingerprint } from '../../../src/config/fingerprint.js';
import { loadConfigFile } from '../../../src/config/load.js';
import { fromTransferable, loadConfigOffThread, toTransferable } from '../../../src/config/load-off-thread.js';
import { Secret } from '../../../src/config/secret.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SHIPPED = ['config/gatehouse.yaml', ...readdirSync(`${ROOT}config/examples`).filter((f) => f.endsWith('.yaml')).map((f) => `config/examples/${f}`)];
const anyEnv = new Proxy<Record<string, string>>({}, { get: (_t, key) => (typeof key === 'string' ? 'placeholder-value' : undefined) });

const KITCHEN_SINK = `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0, token: admin-secret }
telemetry: { traces: { endpoint: http://127.0.0.1:4318/v1/traces, headers: { x-api-key: otlp-secret } } }
upstreams:
  app: { endpoints: [http://127.0.0.1:3000, http://127.0.0.1:3001] }
  pay: { endpoints: [https://api.example.com], credentials: { header: { name: authorization, value: Bearer sk_test } } }
  auth: { endpoints: [https://auth.example.com], credentials: { oauth2: { tokenUrl: https://auth.example.com/t, clientId: c, clientSecret: cs } } }
routes:
  - { name: r, listener: in, upstream: app, match: { pathRegex: "^/a+$" }, retry: { attempts: 2 } }
  - { name: hook, listener: in, upstream: app, match: { path: /hook }, webhook: { provider: github, secrets: [one, two] } }
`;

const write = (yaml: string) => {
  const dir = mkdtempSync(join(tmpdir(), 'gh-offthread-'));
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(file, yaml);
  return { dir, file };
};

describe('handing a loaded config from the worker to the serving thread', () => {
  it.each([...SHIPPED, 'kitchen sink'])('%s arrives as loaded: secrets and URLs rebuilt, nothing lost', (name) => {
    const file = name === 'kitchen sink' ? write(KITCHEN_SINK).file : `${ROOT}${name}`;
    const direct = loadConfigFile(file, { env: anyEnv, readFile: () => 'placeholder-value', checkFiles: false });
    const arrived = fromTransferable(structuredClone(toTransferable(direct)));
    expect(fingerprint(arrived.config)).toBe(fingerprint(direct.config)); // secrets compared by their values
    expect(JSON.stringify(arrived)).toBe(JSON.stringify(direct));
    if (name === 'kitchen sink') {
      expect(arrived.config.admin.token).toBeInstanceOf(Secret);
      expect(arrived.config.admin.token?.reveal()).toBe('admin-secret');
      expect(arrived.config.upstreams.app!.endpoints[1]).toBeInstanceOf(URL);
      expect(arrived.config.routes[1]!.webhook!.secrets!.map((s) => s.reveal())).toEqual(['one', 'two']);
    }
  });
});

describe('loadConfigOffThread', () => {
  it('loads a valid config in a worker, secrets wrapped', async () => {
    const { file } = write(KITCHEN_SINK);
    const loaded = await loadConfigOffThread(file, { env: {} });
    expect(loaded.hash).toBe(loadConfigFile(file, { env: {} }).hash);
    expect(loaded.config.upstreams.pay!.credentials!.header!.value.reveal()).toBe('Bearer sk_test');
  });

  it('rejects with the same located problems as loading on this thread', async () => {
    const { file } = write(KITCHEN_SINK.replace('retry: { attempts: 2 }', 'retry: { attempts: two }').replace('name: in,', 'nmae: in,'));
    const here = (() => {
      try {
        loadConfigFile(file, { env: {} });
      } catch (err) {
        return (err as ConfigError).problems;
      }
    })();
    await expect(loadConfigOffThread(file, { env: {} })).rejects.toMatchObject({ problems: here });
    expect(here!.length).toBeGreaterThanOrEqual(2);
  });

  it('refuses a file that needs more memory than the worker may use, as a located problem', async () => {
    const { file } = write(`version: 1\nx: ${'['.repeat(300_000)}${']'.repeat(300_000)}\n`);
    const err = await loadConfigOffThread(file, { env: {}, maxHeapMb: 64 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(`${file}:1:1 (root): needs more than 64 MB of memory to load; refused`);
  });

  it('gives up on a load that takes too long, counting from when the worker has started', async () => {
    // 300,000 flow-sequence items: parsing takes the worker far longer than the 20 ms allowed,
    // while the worker's own start (seconds under valgrind or on a busy machine) does not count
    const { file } = write(`version: 1\nx: [${'1, '.repeat(300_000)}1]\n`);
    await expect(loadConfigOffThread(file, { env: {}, timeoutMs: 20 })).rejects.toThrow(`${file}:1:1 (root): took longer than 0.02s to load; refused`);
    const { file: small } = write(KITCHEN_SINK);
    await expect(loadConfigOffThread(small, { env: {}, timeoutMs: 20_000 })).resolves.toBeDefined();
  });

  it('never waits on a FIFO named as the config or in ${file:}', async () => {
    const { dir, file } = write(KITCHEN_SINK.replace('admin-secret', '"${file:token}"'));
    execFileSync('mkfifo', [join(dir, 'token'), join(dir, 'fifo.yaml')]);
    await expect(loadConfigOffThread(file, { env: {} })).rejects.toThrow(/admin\.token: cannot read file .*token \(not a regular file: a FIFO\)$/);
    await expect(loadConfigOffThread(join(dir, 'fifo.yaml'), { env: {} })).rejects.toThrow(/cannot read config file \(not a regular file: a FIFO\)$/);
  });
});
