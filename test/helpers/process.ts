import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { onCleanup } from './cleanup.js';
import { eventually } from './http.js';

export const MAIN = resolve(import.meta.dirname, '../../dist/main.js');

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
export function writeConfig(yaml: string, files: Record<string, string> = {}, dir = mkdtempSync(join(tmpdir(), 'gatehouse-proc-'))): string {
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const file = join(dir, `gatehouse-${Math.random().toString(36).slice(2)}.yaml`);
  const withAdmin = /^admin:/m.test(yaml) ? yaml : `${yaml}\nadmin: { address: 127.0.0.1:0 }\n`;
  writeFileSync(file, /^dataDir:/m.test(withAdmin) ? withAdmin : `${withAdmin}\ndataDir: ${join(dir, 'data')}\n`);
  return file;
}

export interface GatehouseProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly file: string;
  readonly dir: string;
  /** `http://127.0.0.1:PORT` of a listener. */
  url(listener: string): string;
  admin(path: string): string;
  /** Everything the process wrote to stderr (its log). */
  log(): string;
  /** The log lines, JSON parsed (`{ text }` for a line that is not JSON). */
  logLines(): any[];
  /** Access-log lines (stdout), JSON parsed. */
  accessLog(): any[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (if still running) and waits for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** Resident set size and its peak (VmRSS, VmHWM from /proc), in bytes. */
  memory(): { rss: number; peak: number };
}

const parseLines = (text: string): any[] =>
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

/**
 * Runs the built CLI (`node dist/main.js run -c FILE`) as a child process, as a user would: for
 * signals, exit codes, memory and what survives a `kill -9`. Listeners on port 0 are read back
 * from the "gatehouse started" log line. `admin` defaults to 127.0.0.1:0 and `dataDir` to the
 * temp folder (or `dir`, to restart on the same state). Killed after the test if still running.
 */
export async function spawnGatehouse(
  yaml: string,
  options: { dir?: string; env?: NodeJS.ProcessEnv; nodeArgs?: string[]; files?: Record<string, string> } = {},
): Promise<GatehouseProcess> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm test does)`);
  const file = writeConfig(yaml, options.files, options.dir);
  const dir = resolve(file, '..');
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), MAIN, 'run', '-c', file], {
    cwd: dir,
    env: { PATH: process.env.PATH, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const kill = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  onCleanup(() => kill('SIGKILL'));
  const started = await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`gatehouse exited with ${child.exitCode}: ${stderr}`);
      return parseLines(stderr).find((l) => l.msg === 'gatehouse started') as { listeners: Record<string, string>; admin: string } | undefined;
    },
    15_000,
    50,
  );
  return {
    child,
    pid: child.pid!,
    file,
    dir,
    url: (listener) => `http://${started.listeners[listener]}`,
    admin: (path) => `http://${started.admin}${path}`,
    log: () => stderr,
    logLines: () => parseLines(stderr),
    accessLog: () => parseLines(stdout),
    exited,
    kill,
    memory() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
      return { rss: kb('VmRSS'), peak: kb('VmHWM') };
    },
  };
}
