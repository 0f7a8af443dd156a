import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { ConfigError, type ConfigProblem } from './errors.js';
import type { LoadedConfig } from './load.js';
import { Secret } from './secret.js';

/*
 * SPEC §3.1: a reload reads and validates off the serving thread. A worker thread reads, parses,
 * interpolates and validates the file under its own heap limit and a time limit; the serving
 * thread only rebuilds the few class instances of the result (secrets, URLs) and compiles it.
 * A file that would exhaust memory kills the worker, never the process: it is a config problem.
 */

/** What the worker is asked to do. */
export interface LoadRequest {
  readonly file: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly envOptional: boolean;
}

/** What the worker answers: a loaded config in transferable form, or the problems. */
export type LoadAnswer = { readonly ok: true; readonly loaded: Transferable } | { readonly ok: false; readonly problems: readonly ConfigProblem[]; readonly skipped: readonly ConfigProblem[] };

export interface OffThreadOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
  /**
   * Longest reading, parsing and validating may take before the load is abandoned (default 60 s).
   * It counts from when the worker has loaded its own modules: how long a thread takes to start
   * depends on the machine (a minute under valgrind), not on the file.
   */
  readonly timeoutMs?: number;
  /** The worker's heap limit (default: half this process's, between 64 MB and 2 GB). */
  readonly maxHeapMb?: number;
  /** `validate --env-optional` (see LoadOptions). */
  readonly envOptional?: boolean;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** The worker's first message: it is about to read the file. */
export const STARTED = 'started';

/** Loads `file` in a worker thread; resolves to what `loadConfigFile` returns, or rejects with a ConfigError. */
export function loadConfigOffThread(file: string, options: OffThreadOptions = {}): Promise<LoadedConfig> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxHeapMb = options.maxHeapMb ?? defaultHeapMb();
  const request: LoadRequest = { file, env: { ...(options.env ?? process.env) }, envOptional: options.envOptional === true };
  const problem = (message: string) => new ConfigError([{ file, line: 1, col: 1, path: '', message }]);
  return new Promise<LoadedConfig>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const worker = startWorker(request, maxHeapMb);
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      outcome();
      void worker.terminate();
    };
    worker.on('message', (answer: LoadAnswer | typeof STARTED) => {
      if (answer === STARTED) {
        timer = setTimeout(() => settle(() => reject(problem(`took longer than ${timeoutMs / 1000}s to load; refused`))), timeoutMs);
        return;
      }
      settle(() => {
        if (!answer.ok) reject(new ConfigError(answer.problems, answer.skipped));
        else resolve(fromTransferable(answer.loaded));
      });
    });
    worker.once('error', (err: Error & { code?: string }) =>
      settle(() =>
        reject(
          err.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? problem(`needs more than ${maxHeapMb} MB of memory to load; refused`)
            : problem(`cannot be loaded: ${err.message}`),
        ),
      ),
    );
    worker.once('exit', (code) => settle(() => reject(problem(`cannot be loaded: the loader stopped (exit code ${code})`))));
  });
}

function startWorker(request: LoadRequest, maxHeapMb: number): Worker {
  const options = { workerData: request, resourceLimits: { maxOldGenerationSizeMb: maxHeapMb } };
  const built = new URL('./load-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return new Worker(built, options);
  // Running from the TypeScript sources (the test suite): the build beside them, which the suite
  // keeps current, starts in a fraction of the time; without one, tsx compiles the sources.
  const checkoutBuild = new URL('../../dist/config/load-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(checkoutBuild))) return new Worker(checkoutBuild, options);
  const source = new URL('./load-worker.ts', import.meta.url).href;
  return new Worker(`import('tsx/esm/api').then((tsx) => tsx.register()).then(() => import(${JSON.stringify(source)}))`, { ...options, eval: true });
}

/** Half of this process's heap limit (which follows --max-old-space-size and the container's memory). */
function defaultHeapMb(): number {
  const mb = Math.floor(getHeapStatistics().heap_size_limit / (1024 * 1024) / 2);
  return Math.min(2048, Math.max(64, mb));
}

/**
 * A LoadedConfig as structured clone can carry it: the schema's output holds `Secret` and `URL`
 * instances, which a clone would turn into empty objects. They travel as strings, with the list of
 * places to rebuild them, so no key of the user's config can be mistaken for a marker.
 */
export interface Transferable {
  readonly loaded: Omit<LoadedConfig, 'config'> & { readonly config: unknown };
  readonly revive: readonly (readonly [path: readonly (string | number)[], kind: 'secret' | 'url'])[];
}

export function toTransferable(loaded: LoadedConfig): Transferable {
  const revive: [(string | number)[], 'secret' | 'url'][] = [];
  const walk = (value: unknown, path: (string | number)[]): unknown => {
    if (value === null || typeof value !== 'object') return value;
    if (value instanceof Secret) {
      revive.push([path, 'secret']);
      return value.reveal();
    }
    if (value instanceof URL) {
      revive.push([path, 'url']);
      return value.href;
    }
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i]));
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      // a new kind of value in the schema's output: add it here (the shipped-config test finds it)
      throw new Error(`cannot hand a ${value.constructor.name} at ${path.join('.')} to the serving thread`);
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = walk(v, [...path, k]);
    return out;
  };
  return { loaded: { ...loaded, config: walk(loaded.config, []) }, revive };
}

export function fromTransferable({ loaded, revive }: Transferable): LoadedConfig {
  const config = loaded.config as Record<string | number, unknown>;
  for (const [path, kind] of revive) {
    let parent = config;
    for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
    const key = path[path.length - 1]!;
    const text = parent[key] as string;
    parent[key] = kind === 'secret' ? new Secret(text) : new URL(text);
  }
  return { ...loaded, config: config as unknown as LoadedConfig['config'] };
}
