import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigSchema } from '../../../src/config/schema.js';
import { ERRORS } from '../../../src/core/errors.js';
import { ATTR, EVENTS, METRICS, RUNTIME_METRICS } from '../../../src/core/names.js';

/*
 * The reference pages are checked against the code's own single definitions: every config key
 * and default of the loader's schema, every error code of the error table, every metric, span
 * attribute and span event name. A key, code or name added without its reference entry fails
 * here, and so does a reference entry for something that does not exist.
 */

const read = (page: string) => readFileSync(new URL(`../../../docs/reference/${page}`, import.meta.url), 'utf8');

interface SchemaKey {
  readonly path: string;
  readonly default?: unknown;
}

/** Every key of the config schema as the reference writes it (`routes[].retry.attempts`, `upstreams.<name>.tls`). */
function schemaKeys(): Map<string, SchemaKey> {
  const keys = new Map<string, SchemaKey>();
  // A key is a property of an object; list items (`[]`) and map entries (`.<name>`) only lead to keys.
  const walk = (node: unknown, path: string, isKey: boolean) => {
    if (node === null || typeof node !== 'object') return;
    const s = node as Record<string, unknown>;
    if (isKey && !keys.has(path)) keys.set(path, 'default' in s ? { path, default: s.default } : { path });
    for (const k of ['anyOf', 'oneOf', 'allOf']) if (Array.isArray(s[k])) for (const x of s[k] as unknown[]) walk(x, path, isKey);
    if (s.properties !== undefined) for (const [k, v] of Object.entries(s.properties as object)) walk(v, path === '' ? k : `${path}.${k}`, true);
    if (s.items !== undefined) walk(s.items, `${path}[]`, false);
    if (s.additionalProperties !== null && typeof s.additionalProperties === 'object') walk(s.additionalProperties, `${path}.<name>`, false);
  };
  walk(z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any' }), '', false);
  // An inline quota has the keys of a named one, documented once under quotas.<name>.
  for (const path of [...keys.keys()]) if (path.startsWith('routes[].quota[].')) keys.delete(path);
  return keys;
}

/** The rows of the reference's tables: first cell a `key`, second its default. */
function referenceRows(page: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of page.split('\n')) {
    const m = /^\| `([^`]+)` \|([^|]*)\|/.exec(line);
    if (m !== null) rows.set(m[1]!, m[2]!.trim());
  }
  return rows;
}

/** A schema default as the reference writes it: `16kb`, `100`, `[RS256, ES256]`, `""`, `["*"]`. */
function asWritten(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(asWritten).join(', ')}]`;
  // quoted where YAML would read the plain text as something else (`*` starts an alias)
  if (value === '' || (typeof value === 'string' && /^[*&!|>'"%@`]/.test(value))) return JSON.stringify(value);
  return String(value);
}

describe('docs/reference/config.md', () => {
  const keys = schemaKeys();
  const rows = referenceRows(read('config.md'));

  it('reads the schema and the page (both have the keys the docs use most)', () => {
    expect(keys.get('routes[].retry.attempts')).toEqual({ path: 'routes[].retry.attempts', default: 3 });
    expect(keys.has('upstreams.<name>.circuitBreaker.openFor')).toBe(true);
    expect(rows.get('routes[].timeout')).toBe('`30s`');
  });

  it('has a row for every key of the schema', () => {
    expect([...keys.keys()].filter((k) => !rows.has(k))).toEqual([]);
  });

  it('has no row for a key the schema does not have', () => {
    expect([...rows.keys()].filter((k) => !keys.has(k))).toEqual([]);
  });

  it("states every schema default in the key's row", () => {
    const wrong = [...keys.values()]
      .filter((k) => k.default !== undefined && !(typeof k.default === 'object' && !Array.isArray(k.default)))
      .filter((k) => !(rows.get(k.path) ?? '').includes(`\`${asWritten(k.default)}\``))
      .map((k) => `${k.path}: the schema's default is ${asWritten(k.default)}, the page says ${rows.get(k.path) ?? 'nothing'}`);
    expect(wrong).toEqual([]);
  });
});

describe('docs/reference/errors.md', () => {
  const page = read('errors.md');

  it.each(Object.entries(ERRORS))('shows %s: its row in the table and what it looks like', (code, { status, title }) => {
    expect(page).toMatch(new RegExp(`^\\| \`${code}\` \\| ${status} \\|`, 'm'));
    const section = page.split(`### \`${code}\`\n`)[1]?.split('\n### ')[0] ?? '';
    expect(section, `a "### \`${code}\`" section`).toContain(`HTTP/1.1 ${status} `);
    expect(section).toContain(`gatehouse-error: ${code}`);
    expect(section).toContain(`{"type":"urn:gatehouse:error:${code}","title":"${title}","status":${status},"code":"${code}"`);
  });

  it('lists no code the error table does not have', () => {
    const listed = [...page.matchAll(/^\| `([a-z_]+)` \| \d{3} \|/gm)].map((m) => m[1]);
    expect(listed.filter((c) => !(c! in ERRORS))).toEqual([]);
  });
});

describe('docs/reference/metrics.md', () => {
  const page = read('metrics.md');
  const documented = [...page.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((m) => m[1]!);
  // the Prometheus form: the unit's suffix (seconds, bytes, ratio), then _total for a counter
  const isFormOf = (row: string, name: string) => {
    const prefix = name.replace(/\./g, '_');
    return row === prefix || (row.startsWith(`${prefix}_`) && /^((seconds|bytes|ratio)(_total)?|total)$/.test(row.slice(prefix.length + 1)));
  };

  it.each(Object.values(METRICS))('documents %s', (name) => {
    expect(documented.filter((d) => isFormOf(d, name)), `a row for ${name.replace(/\./g, '_')}[_total|_seconds|...]`).toHaveLength(1);
  });

  it('documents no metric that gatehouse does not export', () => {
    const known = [...Object.values(METRICS), ...RUNTIME_METRICS];
    expect(documented.filter((d) => !known.some((k) => isFormOf(d, k)))).toEqual([]);
  });
});

describe('docs/reference/spans.md', () => {
  const page = read('spans.md');

  it.each([...Object.values(EVENTS), ...Object.values(ATTR)])('names %s', (name) => {
    expect(page).toContain(`\`${name}\``);
  });
});
