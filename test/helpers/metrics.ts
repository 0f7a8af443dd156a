import { request } from './http.js';

/** Fetches the admin /metrics text. */
export async function scrape(adminUrl: string): Promise<string> {
  const res = await request(adminUrl);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text;
}

/**
 * The value of the sample `name` whose labels include `labels`, from Prometheus text; undefined
 * when there is none.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) found[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[3]);
  }
  return undefined;
}
