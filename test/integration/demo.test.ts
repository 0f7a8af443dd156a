import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { onCleanup } from '../helpers/cleanup.js';
import { eventually, request } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

/*
 * `npm run demo` as a newcomer uses it: the demo runs as its own process (from source through
 * tsx, so no stale build is tested), on free ports given by its DEMO_*_PORT variables. The test
 * runs curl commands the demo itself printed, then stops it with SIGINT as Ctrl-C would.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PORT_VARS = ['DEMO_INBOUND_PORT', 'DEMO_OUTBOUND_PORT', 'DEMO_ADMIN_PORT', 'DEMO_STORE_PORT', 'DEMO_PROVIDER_PORT', 'DEMO_OTLP_PORT'];

interface Demo {
  readonly child: ChildProcess;
  readonly ports: Record<string, number>;
  stdout(): string;
  stderr(): string;
  exit: Promise<number | null>;
}

/** Distinct free ports: all held open at once, so the OS cannot hand out one twice. */
async function freePorts(): Promise<Record<string, number>> {
  const servers = await Promise.all(PORT_VARS.map(() => startUpstream()));
  const ports = Object.fromEntries(PORT_VARS.map((name, i) => [name, servers[i]!.port]));
  await Promise.all(servers.map((s) => s.close()));
  return ports;
}

function startDemo(ports: Record<string, number>): Demo {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('OTEL_')) env[k] = v;
  for (const [k, v] of Object.entries(ports)) env[k] = String(v);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo/main.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, ports, stdout: () => out, stderr: () => err, exit };
}

/** The pasteable command on the printed line that contains `marker`: method, URL and headers. */
function printedCurl(output: string, marker: string): { method: string; url: string; headers: Record<string, string> } {
  const line = output.split('\n').find((l) => l.includes('curl') && l.includes(marker));
  if (line === undefined) throw new Error(`the demo printed no curl command with ${marker}`);
  const url = /(http:\/\/127\.0\.0\.1:\d+\S*)/.exec(line)![1]!;
  const method = /-X (\w+)/.exec(line)?.[1] ?? 'GET';
  const headers: Record<string, string> = {};
  for (const m of line.matchAll(/-H '([^:]+): ([^']*)'/g)) headers[m[1]!] = m[2]!;
  return { method, url, headers };
}

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });

describe('npm run demo', () => {
  it('starts the store, the provider and gatehouse, prints curl commands that work, and stops cleanly on SIGINT', async () => {
    const demo = startDemo(await freePorts());
    await eventually(() => {
      if (demo.child.exitCode !== null) throw new Error(`the demo exited with ${demo.child.exitCode}`);
      return demo.stdout().includes('Ctrl-C stops everything');
    }, 45_000, 100).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout:\n${demo.stdout()}\nstderr:\n${demo.stderr()}`);
    });
    const out = demo.stdout();
    expect(out).toContain(`http://127.0.0.1:${demo.ports.DEMO_INBOUND_PORT}`);

    // routing: inbound /api/products reaches the store with /api stripped
    const products = printedCurl(out, '/api/products');
    const listed = await request(products.url, { method: products.method, headers: products.headers });
    expect(listed.status).toBe(200);
    expect(listed.json().products.map((p: { id: string }) => p.id)).toContain('mug');
    expect(listed.headers['x-request-id']).toBeTruthy();

    // a gatehouse-made error: problem+json with the gatehouse-error header
    const nope = printedCurl(out, '404 no_route');
    const missing = await request(nope.url, { method: nope.method, headers: nope.headers });
    expect(missing.status).toBe(404);
    expect(missing.headers['content-type']).toBe('application/problem+json');
    expect(missing.headers['gatehouse-error']).toBe('no_route');
    expect(missing.json()).toMatchObject({ type: 'urn:gatehouse:error:no_route', status: 404, code: 'no_route' });

    // the provider hanging up shows as 502 bad_gateway on the outbound listener
    const down = printedCurl(out, '502 bad_gateway');
    expect(down.headers['x-demo-fault']).toBe('down');
    const hungUp = await request(down.url, { method: down.method, headers: down.headers });
    expect(hungUp.status).toBe(502);
    expect(hungUp.headers['gatehouse-error']).toBe('bad_gateway');
    expect(hungUp.json()).toMatchObject({ code: 'bad_gateway', route: 'payments' });

    // the access log line and the span reach stdout (spans through the built-in OTLP receiver)
    await eventually(() => /"route":"catalogue".*"status":200/.test(demo.stdout()), 15_000, 100);
    await eventually(() => /\[trace [0-9a-f]{8}\] SERVER GET \/api\/products\/\*\s+200/.test(demo.stdout()), 15_000, 100);

    // Ctrl-C under `npm run demo` delivers SIGINT twice: from the terminal and forwarded by npm
    demo.child.kill('SIGINT');
    demo.child.kill('SIGINT');
    expect(await demo.exit).toBe(0);
    expect(demo.stdout()).toContain('demo stopped');
    for (const name of PORT_VARS) {
      expect(await refused(demo.ports[name]!), `${name} is closed after the demo stopped`).toBe(true);
    }
  }, 90_000);

  it('refuses to start, naming the variable to set, when a port is taken', async () => {
    const squatter = await startUpstream();
    const demo = startDemo({ ...(await freePorts()), DEMO_ADMIN_PORT: squatter.port });
    expect(await demo.exit).toBe(1);
    expect(demo.stderr()).toContain(`port ${squatter.port} for gatehouse's admin API is not available (already in use); set DEMO_ADMIN_PORT to a free port`);
    expect(squatter.received).toHaveLength(0);
  }, 60_000);
});
