import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { onCleanup } from './cleanup.js';
import { eventually } from './http.js';

const MAIN = resolve(import.meta.dirname, '../../dist/main.js');

export interface GatehouseProcess {
  readonly child: ChildProcess;
  readonly file: string;
  readonly dir: string;
  /** `http://127.0.0.1:PORT` of a listener. */
  url(listener: string): string;
  admin(path: string): string;
  /** Everything the process wrote to stderr (its log). */
  log(): string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

/**
 * Runs the built CLI (`node dist/main.js run -c FILE`) as a child process: the way to test what
 * survives a `kill -9`. Listeners on port 0 are read back from the "gatehouse started" log line.
 */
export async function spawnGatehouse(yaml: string, options: { dir?: string } = {}): Promise<GatehouseProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm test does)`);
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'gatehouse-proc-'));
  const file = join(dir, `gatehouse-${Math.random().toString(36).slice(2)}.yaml`);
  const withAdmin = /^admin:/m.test(yaml) ? yaml : `${yaml}\nadmin: { address: 127.0.0.1:0 }\n`;
  writeFileSync(file, /^dataDir:/m.test(withAdmin) ? withAdmin : `${withAdmin}\ndataDir: ${join(dir, 'data')}\n`);
  const child = spawn(process.execPath, [MAIN, 'run', '-c', file], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  onCleanup(() => kill('SIGKILL'));
  const started = await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`gatehouse exited with ${child.exitCode}: ${stderr}`);
      const line = stderr.split('\n').find((l) => l.includes('"gatehouse started"'));
      return line === undefined ? undefined : (JSON.parse(line) as { listeners: Record<string, string>; admin: string });
    },
    15_000,
    50,
  );
  return {
    child,
    file,
    dir,
    url: (listener) => `http://${started.listeners[listener]}`,
    admin: (path) => `http://${started.admin}${path}`,
    log: () => stderr,
    kill,
  };
}
