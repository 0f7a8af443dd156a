import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onCleanup } from './cleanup.js';
import { eventually } from './http.js';

export const MAIN = join(import.meta.dirname, '..', '..', 'dist', 'main.js');

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node dist/main.js ...args` to completion. */
export async function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [MAIN, ...args], { env: options.env ?? { PATH: process.env.PATH }, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** Writes YAML (and `files` next to it) to a fresh temp folder; returns the config file's path. */
export function writeConfig(yaml: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-proc-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(file, yaml.includes('dataDir:') ? yaml : `${yaml}\ndataDir: ${join(dir, 'data')}\n`);
  return file;
}

export interface GatehouseProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly file: string;
  /** gatehouse's own log lines (stderr), JSON parsed where they are JSON. */
  readonly log: () => any[];
  /** Access-log lines (stdout). */
  readonly accessLog: () => any[];
  readonly stderr: () => string;
  url(listener: string): string;
  admin(path: string): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resident set size and its peak (VmRSS, VmHWM from /proc), in bytes. */
  memory(): { rss: number; peak: number };
}

/**
 * Spawns `node dist/main.js run -c FILE` as a user would and waits for its "gatehouse started"
 * log line, which names the bound addresses. Killed after the test if still running.
 */
export async function spawnGatehouse(
  yaml: string,
  options: { env?: NodeJS.ProcessEnv; nodeArgs?: string[]; files?: Record<string, string> } = {},
): Promise<GatehouseProcess> {
  const file = writeConfig(yaml, options.files);
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), MAIN, 'run', '-c', file], {
    env: { PATH: process.env.PATH, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const lines = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return { text: l };
        }
      });
  const started = await Promise.race([
    eventually(() => lines(stderr).find((l) => l.msg === 'gatehouse started'), 15_000),
    exited.then((e) => {
      throw new Error(`gatehouse exited (${e.code ?? e.signal}) before starting:\n${stderr}`);
    }),
  ]);
  const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
  return {
    child,
    pid: child.pid!,
    file,
    log: () => lines(stderr),
    accessLog: () => lines(stdout),
    stderr: () => stderr,
    url: (listener) => `http://127.0.0.1:${portOf(started.listeners[listener])}`,
    admin: (path) => `http://127.0.0.1:${portOf(started.admin)}${path}`,
    exited,
    memory() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
      return { rss: kb('VmRSS'), peak: kb('VmHWM') };
    },
  };
}
