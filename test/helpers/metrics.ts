import type { TestGatehouse } from './gatehouse.js';
import { request } from './http.js';

/** One sample of admin /metrics, e.g. metric(g, 'gatehouse_ratelimit_decisions_total', { route: 'api', result: 'allowed' }). */
export async function metric(g: TestGatehouse, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const text = (await request(g.admin('/metrics'))).text;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.indexOf('}'));
    if (Object.entries(labels).every(([k, v]) => body.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}
