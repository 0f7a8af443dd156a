import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { DestinationStream } from 'pino';
import { startGatehouse as start, type Gatehouse } from '../../src/gatehouse.js';
import { onCleanup } from './cleanup.js';
import { request, type RequestOptions, type Response } from './http.js';

/** Collects written lines (JSON parsed) in memory: a pino destination for tests. */
export class LineSink extends Writable implements DestinationStream {
  readonly lines: string[] = [];
  private partial = '';

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: () => void): void {
    const text = this.partial + chunk.toString();
    const parts = text.split('\n');
    this.partial = parts.pop()!;
    for (const p of parts) if (p.trim()) this.lines.push(p);
    done();
  }

  get json(): any[] {
    return this.lines.map((l) => JSON.parse(l));
  }

  /** Everything written, to grep for secrets. */
  get all(): string {
    return this.lines.join('\n') + this.partial;
  }
}

export interface TestGatehouse {
  readonly gh: Gatehouse;
  readonly dir: string;
  readonly file: string;
  readonly accessLog: LineSink;
  readonly log: LineSink;
  /** Base URL of a listener, e.g. `url('in') + '/x'`. */
  url(listener: string): string;
  admin(path: string): string;
  fetch(listener: string, path: string, options?: RequestOptions): Promise<Response>;
  /** Writes new YAML to the config file (the watcher or reload picks it up). */
  write(yaml: string): void;
  stop(): Promise<void>;
}

/**
 * Starts gatehouse in this process from YAML text, exactly as a user writes it, with listeners
 * and the admin API on port 0. `admin` defaults to 127.0.0.1:0, `dataDir` to a temp folder and
 * `shutdown.drainTimeout` to 2s when the YAML sets none.
 */
export async function startGatehouse(
  yaml: string,
  options: { env?: NodeJS.ProcessEnv; watch?: boolean; files?: Record<string, string> } = {},
): Promise<TestGatehouse> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-test-'));
  const file = join(dir, 'gatehouse.yaml');
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), content);
  const withAdmin = (text: string) => (/^admin:/m.test(text) ? text : `${text}\nadmin: { address: 127.0.0.1:0 }\n`);
  const withDataDir = (text: string) => (/^dataDir:/m.test(text) ? text : `${text}\ndataDir: ${join(dir, 'data')}\n`);
  // a test that leaves a request stalled must not wait the default 20 s drain at cleanup
  const withDrain = (text: string) => (/^shutdown:/m.test(text) ? text : `${text}\nshutdown: { drainTimeout: 2s }\n`);
  const prepare = (text: string) => withDrain(withDataDir(withAdmin(text)));
  writeFileSync(file, prepare(yaml));
  const accessLog = new LineSink();
  const log = new LineSink();
  const gh = await start({
    configFile: file,
    env: options.env ?? {},
    accessLogStream: accessLog,
    accessLogFlushMs: 0, // tests read the line right after the answer
    logStream: log,
    watch: options.watch ?? false,
    watchIntervalMs: 100,
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await gh.shutdown();
  };
  onCleanup(stop);
  const url = (listener: string) => {
    const a = gh.listenerAddress(listener);
    if (a === undefined) throw new Error(`no listener ${listener}`);
    return `http://127.0.0.1:${a.port}`;
  };
  return {
    gh,
    dir,
    file,
    accessLog,
    log,
    url,
    admin: (path) => `http://127.0.0.1:${gh.adminAddress.port}${path}`,
    fetch: (listener, path, opts) => request(url(listener) + path, opts),
    write: (text) => writeFileSync(file, prepare(text)),
    stop,
  };
}
