import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { onCleanup } from './cleanup.js';
import { eventually, request } from './http.js';
import { closedPort } from './upstream.js';

/**
 * Debian's `prometheus` package brings both binaries; `.ci/run` installs it when the machine
 * lacks it. A missing binary fails the test with this hint rather than skipping it.
 */
const MISSING = 'install Debian\'s prometheus package (apt-get install prometheus): it brings /usr/bin/prometheus and /usr/bin/promtool';

export interface ToolResult {
  readonly code: number;
  readonly output: string;
}

/** Runs promtool with `args`; resolves with its exit code and its stdout and stderr together. */
export function promtool(args: readonly string[]): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile('promtool', args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err !== null && (err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new Error(MISSING));
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, output: `${stdout}${stderr}` });
    });
  });
}

/** One sample of an instant query's vector result. */
export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

export interface PrometheusServer {
  readonly url: string;
  /** An instant query now: the result vector (a scalar becomes one sample), or throws Prometheus' error. */
  query(expr: string): Promise<PromSample[]>;
  /** The number of successful scrapes of the target so far (`up` is 1 after each). */
  scrapes(): Promise<number>;
  /** GET /api/v1/rules: every rule with its health and last error. */
  rules(): Promise<{ name: string; health: string; lastError?: string }[]>;
}

export interface PrometheusOptions {
  /** `host:port` of the one target, scraped at `metricsPath` under job `gatehouse`. */
  readonly target: string;
  readonly metricsPath?: string;
  /** Scrape and rule evaluation interval (default 1s). */
  readonly interval?: string;
  /** Rule files to load, copied beside the generated config. */
  readonly ruleFiles?: readonly string[];
}

/**
 * A real Prometheus server of this test's own: a free loopback port, storage in a temp folder,
 * one scrape job. Stopped (SIGTERM, then SIGKILL) and its folder removed in cleanup.
 */
export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-prometheus-'));
  const rules = (options.ruleFiles ?? []).map((file) => {
    copyFileSync(file, join(dir, basename(file)));
    return basename(file);
  });
  const interval = options.interval ?? '1s';
  writeFileSync(
    join(dir, 'prometheus.yml'),
    JSON.stringify({
      global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
      rule_files: rules,
      scrape_configs: [{ job_name: 'gatehouse', metrics_path: options.metricsPath ?? '/metrics', static_configs: [{ targets: [options.target] }] }],
    }),
  );
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new Error(MISSING) : err));
  });
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  await spawned;
  try {
    await eventually(async () => (await request(`${url}/-/ready`)).status === 200, 20_000, 50);
  } catch (err) {
    throw new Error(`prometheus did not get ready: ${(err as Error).message}\n${stderr}`);
  }

  const api = async <T>(path: string): Promise<T> => {
    const res = await request(`${url}${path}`);
    const body = res.json<{ status: string; data: T; error?: string }>();
    if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error ?? res.text}`);
    return body.data;
  };
  const query = async (expr: string): Promise<PromSample[]> => {
    const data = await api<{ resultType: string; result: unknown }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    if (data.resultType === 'vector') return data.result as PromSample[];
    if (data.resultType === 'scalar') return [{ metric: {}, value: data.result as [number, string] }];
    throw new Error(`prometheus answered a ${data.resultType} for ${expr}`);
  };
  return {
    url,
    query,
    scrapes: async () => Number((await query('sum_over_time(up{job="gatehouse"}[1h])'))[0]?.value[1] ?? 0),
    rules: async () =>
      (await api<{ groups: { rules: { name: string; health: string; lastError?: string }[] }[] }>('/api/v1/rules')).groups.flatMap((g) => g.rules),
  };
}
