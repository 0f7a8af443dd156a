import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, formatProblem } from '../../../src/config/errors.js';
import { loadConfigFile, loadConfigText, type LoadOptions } from '../../../src/config/load.js';
import { notBuilt } from '../../../src/config/schema.js';
import { Secret } from '../../../src/config/secret.js';
import { z } from 'zod';

/** The problems of an invalid config, as the CLI prints them (`file:line:col path: message`). */
function problems(yaml: string, options: LoadOptions = {}): string[] {
  try {
    loadConfigText(yaml, 'gh.yaml', { env: {}, ...options });
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  throw new Error('expected the config to be rejected');
}

const load = (yaml: string, options: LoadOptions = {}) => loadConfigText(yaml, 'gh.yaml', { env: {}, ...options });

const MINIMAL = `version: 1
listeners:
  - name: in
    address: 127.0.0.1:8080
upstreams:
  app:
    endpoints: [http://127.0.0.1:3000]
routes:
  - name: r
    listener: in
    upstream: app
`;

describe('config loading', () => {
  it('accepts a minimal config and fills in the documented defaults', () => {
    const { config } = load(MINIMAL);
    expect(config.admin.address).toMatchObject({ host: '127.0.0.1', port: 9901 });
    expect(config.shutdown.drainTimeout).toBe(20_000);
    expect(config.upstreams.app!.connectTimeout).toBe(1_000);
    expect(config.routes[0]!.timeout).toBe(30_000);
    expect(config.telemetry.accessLog).toBe('stdout');
    expect(config.telemetry.metrics.prometheus).toBeUndefined(); // on, unless OTEL_METRICS_EXPORTER leaves it out (src/telemetry/otel-env.ts)
    expect(config.dataDir).toBe('./data');
  });

  it('reports an unknown key at the key, with its full path', () => {
    expect(
      problems(`version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams:
  store:
    endpoints: [http://127.0.0.1:3000]
    conectTimeout: 1s
`),
    ).toEqual(['gh.yaml:6:5 upstreams.store.conectTimeout: unknown key (did you mean connectTimeout?)']);
  });

  it('reports a bad duration at the value with what was written', () => {
    expect(problems(MINIMAL + '    timeout: fast\n')).toEqual([
      'gh.yaml:12:14 routes[0](r).timeout: must be a duration such as 250ms, 2s, 1m or 1h (got "fast")',
    ]);
  });

  it('rejects a bare number where a duration or size is expected, so 5 never means 5 ms', () => {
    expect(problems(MINIMAL + '    timeout: 5\n    maxBodySize: 1024\n')).toEqual([
      'gh.yaml:12:14 routes[0](r).timeout: must be a duration such as 250ms, 2s, 1m or 1h (got 5)',
      'gh.yaml:13:18 routes[0](r).maxBodySize: must be a size such as 512b, 64kb or 10mb (got 1024)',
    ]);
  });

  it('reports a missing environment variable at the value that names it', () => {
    expect(problems(MINIMAL.replace('[http://127.0.0.1:3000]', '["${env:STORE_URL}"]'))).toEqual([
      'gh.yaml:7:17 upstreams.app.endpoints[0]: environment variable STORE_URL is not set',
    ]);
  });

  it('explains that ${...} must be quoted inside a flow sequence or mapping', () => {
    const lines = problems(MINIMAL.replace('http://127.0.0.1:3000', '${env:STORE_URL}'));
    expect(lines[0]).toContain('invalid YAML');
    expect(lines[0]).toContain('quote a value that uses ${...}');
  });

  it('reports a missing ${file:} at the value that names it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-load-'));
    const lines = problems(MINIMAL + 'admin:\n  token: ${file:./missing-token}\n', { baseDir: dir });
    expect(lines).toEqual([`gh.yaml:13:10 admin.token: cannot read file ${join(dir, 'missing-token')} (ENOENT)`]);
  });

  it('reads ${env:} and ${file:} values, dropping one trailing newline of the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-load-'));
    writeFileSync(join(dir, 'token'), 's3cret-from-file\n\n');
    const { config } = load(MINIMAL.replace('[http://127.0.0.1:3000]', '["http://${env:HOST}:3000"]') + 'admin:\n  token: ${file:token}\n', {
      env: { HOST: '127.0.0.2' },
      baseDir: dir,
    });
    expect(config.upstreams.app!.endpoints[0]!.href).toBe('http://127.0.0.2:3000/');
    expect(config.admin.token?.reveal()).toBe('s3cret-from-file\n');
  });

  it('reports every problem at once, in file order', () => {
    const lines = problems(`version: 2
listeners:
  - name: in
    address: nowhere
    bogus: true
upstreams:
  app:
    connectTimeout: 1s
routes:
  - name: r
    listener: out
    upstream: app
    timeout: soon
`);
    expect(lines).toEqual([
      'gh.yaml:1:10 version: must be 1 (got 2)',
      'gh.yaml:4:14 listeners[0].address: must be host:port, e.g. 127.0.0.1:8080 (got "nowhere")',
      'gh.yaml:5:5 listeners[0].bogus: unknown key',
      'gh.yaml:7:3 upstreams.app.endpoints: is required',
      'gh.yaml:11:15 routes[0](r).listener: unknown listener "out" (defined: in)',
      'gh.yaml:13:14 routes[0](r).timeout: must be a duration such as 250ms, 2s, 1m or 1h (got "soon")',
    ]);
  });

  it('points at the key when a value is missing, and at the owning key when a required key is absent', () => {
    expect(problems(MINIMAL + '    timeout:\n')).toEqual([
      'gh.yaml:12:5 routes[0](r).timeout: must be a duration such as 250ms, 2s, 1m or 1h (got null)',
    ]);
    expect(problems(MINIMAL.replace('    endpoints: [http://127.0.0.1:3000]\n', '    connectTimeout: 2s\n'))).toEqual([
      'gh.yaml:6:3 upstreams.app.endpoints: is required',
    ]);
    expect(problems(MINIMAL.replace('    upstream: app\n', ''))).toEqual(['gh.yaml:9:5 routes[0](r).upstream: is required']);
    expect(problems('version: 1\n')).toEqual(['gh.yaml:1:1 listeners: is required']);
  });

  it('counts columns inside flow mappings', () => {
    expect(problems(`version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [http://127.0.0.1:1], maxConnections: 0 } }
`)).toEqual(['gh.yaml:3:70 upstreams.app.maxConnections: must be an integer >= 1 (got 0)']);
  });

  it('reports invalid YAML with its position', () => {
    const lines = problems('version: 1\nlisteners: [\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^gh\.yaml:\d+:\d+ \(root\): invalid YAML: /);
  });

  it('rejects keys of capabilities this build does not have, clearly, instead of ignoring them', () => {
    // which keys are not built changes as capabilities land: test the building block itself
    const schema = z.strictObject({ quotas: notBuilt('quotas').optional() });
    expect(schema.safeParse({}).success).toBe(true);
    const parsed = schema.safeParse({ quotas: { q: { limit: 1 } } });
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues).toMatchObject([{ path: ['quotas'], message: 'quotas is not supported by this build of gatehouse' }]);
  });

  it('never echoes a secret in an error message: secret keys and ${env:}/${file:} values print ***', () => {
    const secret = 'hunter2-very-secret';
    const lines = problems(
      `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
admin: { token: 12345 }
upstreams:
  app:
    endpoints: [http://127.0.0.1:1]
    connectTimeout: \${env:CONNECT}
routes:
  - { name: r, listener: in, upstream: "\${env:UP}" }
`,
      { env: { CONNECT: secret, UP: `${secret}-up` } },
    );
    const text = lines.join('\n');
    expect(text).not.toContain(secret);
    expect(text).not.toContain('12345');
    expect(lines).toEqual([
      'gh.yaml:3:17 admin.token: must be a string (got ***)',
      'gh.yaml:7:21 upstreams.app.connectTimeout: must be a duration such as 250ms, 2s, 1m or 1h (got ***)',
      'gh.yaml:9:40 routes[0](r).upstream: unknown upstream *** (defined: app)',
    ]);
  });

  it('has no schema message that quotes its value itself (only the loader may, as *** for secrets)', () => {
    // a message like `(got ${JSON.stringify(text)})` would print an ${env:} value; use reject()
    const source = readFileSync(new URL('../../../src/config/schema.ts', import.meta.url), 'utf8');
    expect(source.match(/\(got \$\{/g) ?? []).toEqual([]);
  });

  it('wraps secrets so that printing the config never shows them', () => {
    const { config, redacted } = load(MINIMAL + 'admin:\n  token: literal-admin-token\n', {});
    expect(config.admin.token).toBeInstanceOf(Secret);
    expect(JSON.stringify(config)).not.toContain('literal-admin-token');
    expect(inspect(config, { depth: 10 })).not.toContain('literal-admin-token');
    expect(String(config.admin.token)).toBe('***');
    expect((redacted as any).admin.token).toBe('***');
  });

  it('redacts every ${env:} value in the admin view, even under keys that are not secret', () => {
    const { redacted } = load(MINIMAL.replace('[http://127.0.0.1:3000]', '["${env:STORE}"]'), { env: { STORE: 'http://10.1.2.3:80' } });
    expect((redacted as any).upstreams.app.endpoints).toEqual(['***']);
    expect((redacted as any).routes[0].name).toBe('r');
  });

  it('rejects duplicate keys, names and addresses', () => {
    expect(problems(MINIMAL + '    name: again\n')[0]).toMatch(/^gh\.yaml:\d+:\d+ \(root\): invalid YAML: Map keys must be unique/);
    expect(
      problems(`version: 1
listeners:
  - { name: in, address: 127.0.0.1:8080 }
  - { name: in, address: 127.0.0.1:8080 }
`),
    ).toEqual([
      'gh.yaml:4:13 listeners[1].name: duplicate listener name "in"',
      'gh.yaml:4:26 listeners[1].address: address "127.0.0.1:8080" is already used by listeners[0]',
    ]);
  });

  it('rejects more than one of path, pathPrefix and pathRegex, and rewrite.prefix without a pathPrefix', () => {
    expect(problems(MINIMAL + '    match: { path: /a, pathPrefix: /b }\n')).toEqual([
      'gh.yaml:12:12 routes[0](r).match: use only one of path, pathPrefix and pathRegex',
    ]);
    expect(problems(MINIMAL + '    rewrite: { prefix: /v2 }\n')).toEqual([
      'gh.yaml:12:24 routes[0](r).rewrite.prefix: needs match.pathPrefix: it replaces the matched prefix',
    ]);
    expect(problems(MINIMAL + '    match: { pathRegex: "/a(" }\n')).toEqual([
      'gh.yaml:12:25 routes[0](r).match.pathRegex: must be an RE2 regular expression (linear time: no backreferences or lookaround): missing closing ): `/a(`',
    ]);
  });

  it('reports an unreadable config file as a problem, not a crash', () => {
    expect(() => loadConfigFile('/nonexistent/gatehouse.yaml')).toThrow(
      /^\/nonexistent\/gatehouse\.yaml:1:1 \(root\): cannot read config file \(ENOENT\)$/,
    );
  });

  it('hashes the interpolated config, so a rotated ${file:} secret counts as a change and a comment does not', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-load-'));
    writeFileSync(join(dir, 'token'), 'one');
    const yaml = MINIMAL + 'admin:\n  token: ${file:token}\n';
    const a = load(yaml, { baseDir: dir });
    expect(load('# a comment\n' + yaml, { baseDir: dir }).hash).toBe(a.hash);
    writeFileSync(join(dir, 'token'), 'two');
    expect(load(yaml, { baseDir: dir }).hash).not.toBe(a.hash);
  });
});

describe('hostile config input (SPEC §3.1)', () => {
  /** A billion-laughs document: each level lists the previous one nine times. */
  const aliasBomb = (levels: number) => {
    let yaml = MINIMAL + 'x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
    for (let i = 1; i <= levels; i++) yaml += `x${i}: &x${i} [${Array.from({ length: 9 }, () => `*x${i - 1}`).join(', ')}]\n`;
    return yaml;
  };

  it('refuses YAML aliases that expand past 10,000 nodes at the alias, in bounded time', () => {
    const started = performance.now();
    expect(problems(aliasBomb(9))).toEqual(['gh.yaml:16:10 x4[0]: YAML aliases expand to more than 10000 nodes (passed at *x3)']);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('accepts aliases that stay within the bound, as ordinary YAML reuse', () => {
    const { config } = load(
      MINIMAL.replace('routes:\n', 'routes:\n  - { name: a, listener: in, upstream: app, match: &m { pathPrefix: /a, methods: [GET] } }\n') +
        '  - { name: b, listener: in, upstream: app, match: *m }\n',
    );
    expect(config.routes.map((r) => r.match.pathPrefix)).toEqual(['/a', undefined, '/a']);
  });

  it('refuses an alias that refers to a node containing it', () => {
    expect(problems(MINIMAL + 'x: &a [1, *a]\n')).toEqual(['gh.yaml:12:11 x[1]: YAML alias *a refers to a node that contains it']);
  });

  it('reports nesting too deep to load as a located problem, not a crash', () => {
    const lines = problems(MINIMAL + `x: ${'['.repeat(5_000)}${']'.repeat(5_000)}\n`);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^gh\.yaml:\d+:\d+ \(root\): (invalid YAML|too large or nested too deeply)/);
  });

  it('refuses a config file over 10 MB before parsing it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-load-'));
    const file = join(dir, 'big.yaml');
    writeFileSync(file, MINIMAL + `# ${'x'.repeat(10 * 1024 * 1024)}\n`);
    expect(() => loadConfigFile(file)).toThrow(new RegExp(`^${file}:1:1 \\(root\\): cannot read config file \\(larger than 10 MB: 10 MB\\)$`));
  });

  it('refuses a ${file:} over 1 MB, a FIFO and a device, each at its value, without reading them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-load-'));
    writeFileSync(join(dir, 'big'), 'x'.repeat(1024 * 1024 + 1));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    const started = performance.now();
    const lines = problems(
      MINIMAL + '    headers: { request: { set: { a: "${file:big}", b: "${file:fifo}", c: "${file:/dev/zero}" } } }\n',
      { baseDir: dir },
    );
    expect(lines).toEqual([
      `gh.yaml:12:37 routes[0](r).headers.request.set.a: cannot read file ${join(dir, 'big')} (larger than 1 MB: 1 MB)`,
      `gh.yaml:12:55 routes[0](r).headers.request.set.b: cannot read file ${join(dir, 'fifo')} (not a regular file: a FIFO)`,
      'gh.yaml:12:74 routes[0](r).headers.request.set.c: cannot read file /dev/zero (not a regular file: a character device)',
    ]);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('refuses a FIFO or a device named as the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-load-'));
    execFileSync('mkfifo', [join(dir, 'fifo.yaml')]);
    expect(() => loadConfigFile(join(dir, 'fifo.yaml'))).toThrow(/fifo\.yaml:1:1 \(root\): cannot read config file \(not a regular file: a FIFO\)$/);
    expect(() => loadConfigFile('/dev/zero')).toThrow(/^\/dev\/zero:1:1 \(root\): cannot read config file \(not a regular file: a character device\)$/);
  });

  it('refuses a certificate path that is not a regular file', () => {
    const lines = problems(MINIMAL.replace('    address: 127.0.0.1:8080\n', '    address: 127.0.0.1:8080\n    tls: { cert: /dev/zero, key: /dev/zero }\n'));
    expect(lines).toEqual([
      'gh.yaml:5:18 listeners[0].tls.cert: cannot read certificate file /dev/zero (not a regular file: a character device)',
      'gh.yaml:5:34 listeners[0].tls.key: cannot read key file /dev/zero (not a regular file: a character device)',
    ]);
  });
});

describe('header values the config sets (SPEC §3.1)', () => {
  const MESSAGE = 'must be a valid HTTP header value: no CR, LF, NUL or other control character, nothing beyond U+00FF';

  it('refuses CR, LF and NUL in headers.set, written literally, at the value', () => {
    expect(problems(MINIMAL + '    headers: { request: { set: { x-a: "a\\r\\nx-injected: 1" } }, response: { set: { x-b: "b\\0" } } }\n')).toEqual([
      `gh.yaml:12:39 routes[0](r).headers.request.set.x-a: ${MESSAGE}`,
      `gh.yaml:12:89 routes[0](r).headers.response.set.x-b: ${MESSAGE}`,
    ]);
  });

  it('refuses them when they come from ${env:} or ${file:}, never quoting the secret', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-load-'));
    writeFileSync(join(dir, 'key'), 'sk_live_first\nsk_live_second\n'); // one trailing newline is dropped, the inner one stays
    const lines = problems(
      MINIMAL.replace(
        '    endpoints: [http://127.0.0.1:3000]\n',
        '    endpoints: [http://127.0.0.1:3000]\n    credentials: { header: { name: authorization, value: "Bearer ${file:key}" } }\n',
      ) +
        '    headers: { request: { set: { x-api-key: "${env:API_KEY}" } } }\n' +
        '    rewrite: { host: "${env:HOST}" }\n' +
        'telemetry: { traces: { headers: { x-token: "${env:OTLP}" } } }\n',
      { baseDir: dir, env: { API_KEY: 'k3y\r\nx-evil: 1', HOST: 'a\nb', OTLP: 'otlp-s3cret\0' } },
    );
    expect(lines).toEqual([
      `gh.yaml:8:58 upstreams.app.credentials.header.value: ${MESSAGE}`,
      `gh.yaml:13:45 routes[0](r).headers.request.set.x-api-key: ${MESSAGE}`,
      `gh.yaml:14:22 routes[0](r).rewrite.host: ${MESSAGE}`,
      `gh.yaml:15:44 telemetry.traces.headers.x-token: ${MESSAGE}`,
    ]);
    expect(lines.join('\n')).not.toMatch(/sk_live|k3y|x-evil|s3cret/);
  });

  it('refuses a forwarded claim header name from ${env:} with a line break, masked', () => {
    const lines = problems(MINIMAL + '    jwt: { jwksUri: https://idp.example/jwks, forwardClaims: { sub: "${env:CLAIM_HEADER}" } }\n', {
      env: { CLAIM_HEADER: 'x-user\r\nx-admin' },
    });
    expect(lines).toEqual(['gh.yaml:12:69 routes[0](r).jwt.forwardClaims.sub: must be a valid HTTP header name (got ***)']);
  });

  it('accepts tabs, spaces and Latin-1 text, as Node and undici do', () => {
    const { config } = load(MINIMAL + '    headers: { request: { set: { x-a: "caf\\u00e9\\tbar baz" } } }\n');
    expect(config.routes[0]!.headers.request.set['x-a']).toBe('café\tbar baz');
  });
});

describe('problems a newcomer can act on', () => {
  it('suggests the key that was probably meant, from the keys allowed at that place', () => {
    expect(
      problems(`version: 1
listeners: [{ name: in, address: 127.0.0.1:0, trustedProxie: [10.0.0.0/8] }]
upstreams:
  store: { endpoints: [http://127.0.0.1:1], conectTimeout: 1s, circuitBreaker: { openfor: 5s }, LoadBalancing: round-robin }
routes:
  - { name: r, listener: in, upstream: store, tiemout: 2s, retry: { attempt: 2 }, frobnicate: true }
`),
    ).toEqual([
      'gh.yaml:2:47 listeners[0].trustedProxie: unknown key (did you mean trustedProxies?)',
      'gh.yaml:4:45 upstreams.store.conectTimeout: unknown key (did you mean connectTimeout?)',
      'gh.yaml:4:82 upstreams.store.circuitBreaker.openfor: unknown key (did you mean openFor?)',
      'gh.yaml:4:97 upstreams.store.LoadBalancing: unknown key (did you mean loadBalancing?)',
      'gh.yaml:6:47 routes[0](r).tiemout: unknown key (did you mean timeout?)',
      'gh.yaml:6:69 routes[0](r).retry.attempt: unknown key (did you mean attempts?)',
      'gh.yaml:6:83 routes[0](r).frobnicate: unknown key',
    ]);
  });

  it('suggests from the union branch that was written (a webhook provider, a store type)', () => {
    expect(
      problems(
        MINIMAL +
          '    webhook: { provider: hmac, secret: s, header: x-sig, eventId: "header:x-id", algoritm: sha1 }\n' +
          'stores: { s: { type: redis, url: "redis://r:6379", keyprefix: "g:" } }\n',
      ),
    ).toEqual([
      'gh.yaml:12:82 routes[0](r).webhook.algoritm: unknown key (did you mean algorithm?)',
      'gh.yaml:13:52 stores.s.keyprefix: unknown key (did you mean keyPrefix?)',
    ]);
    // github has no algorithm setting: nothing to suggest from another provider's keys
    expect(problems(MINIMAL + '    webhook: { provider: github, secret: s, algoritm: sha1 }\n')).toEqual([
      'gh.yaml:12:45 routes[0](r).webhook.algoritm: unknown key',
    ]);
  });

  it('names a route in its path, except a name that came from ${env:}', () => {
    const yaml = `version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { stripe: { endpoints: [https://api.stripe.com] } }
routes:
  - { name: health, listener: in, upstream: stripe }
  - { name: stripe-charges, listener: in, upstream: strpie }
  - { name: "\${env:ROUTE}", listener: in, upstream: nope }
`;
    expect(problems(yaml, { env: { ROUTE: 'secret-name' } })).toEqual([
      'gh.yaml:6:53 routes[1](stripe-charges).upstream: unknown upstream "strpie" (defined: stripe)',
      'gh.yaml:7:53 routes[2].upstream: unknown upstream "nope" (defined: stripe)',
    ]);
  });
});

describe('validate --env-optional', () => {
  const optional = (yaml: string, options: LoadOptions = {}) => load(yaml, { envOptional: true, ...options });

  it('puts a placeholder the schema accepts where a variable is missing, and lists it', () => {
    const loaded = optional(MINIMAL.replace('[http://127.0.0.1:3000]', '["${env:STORE_URL}"]') + '    timeout: ${env:ROUTE_TIMEOUT}\n');
    expect(loaded.skipped.map(formatProblem)).toEqual([
      'gh.yaml:7:17 upstreams.app.endpoints[0]: not checked: environment variable STORE_URL is not set',
      'gh.yaml:12:14 routes[0](r).timeout: not checked: environment variable ROUTE_TIMEOUT is not set',
    ]);
    expect(loaded.config.upstreams.app!.endpoints[0]!.href).toBe('http://placeholder.invalid/');
  });

  it('still reports every other problem, and a file that exists but cannot be used', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-load-'));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    expect(
      problems(MINIMAL + '    headers: { request: { set: { a: "${env:A}", b: "${file:fifo}", c: "${file:absent}" } } }\n    timeout: soon\n', {
        envOptional: true,
        baseDir: dir,
      }),
    ).toEqual([
      `gh.yaml:12:52 routes[0](r).headers.request.set.b: cannot read file ${join(dir, 'fifo')} (not a regular file: a FIFO)`,
      'gh.yaml:13:14 routes[0](r).timeout: must be a duration such as 250ms, 2s, 1m or 1h (got "soon")',
    ]);
  });
});

describe('a Standard Webhooks secret that is missing', () => {
  it('is reported at the secret, not thrown as a TypeError', () => {
    expect(problems(MINIMAL + '    webhook: { provider: standard, secret: "${env:WH_SECRET}" }\n')).toEqual([
      'gh.yaml:12:44 routes[0](r).webhook.secret: environment variable WH_SECRET is not set',
    ]);
  });
});
