import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/*
 * The floors of docs/architecture.md, checked on the import graph of src/ (eslint's
 * no-restricted-imports says the same per file while you type; this test also sees cycles).
 */

const SRC = resolve(fileURLToPath(new URL('../../../src', import.meta.url)));

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly typeOnly: boolean;
}

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (name.endsWith('.ts')) yield p;
  }
}

/** Every relative import of src/, with whether it is `import type` only. */
function importGraph(): Edge[] {
  const edges: Edge[] = [];
  const IMPORT = /^\s*(import|export)\s+(type\s+)?[^'"]*?\s*from\s*'(\.[^']+)'|import\('(\.[^']+)'\)/gm;
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[3] ?? m[4]!;
      const to = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
      edges.push({ from: relative(SRC, file), to: relative(SRC, to), typeOnly: m[2] !== undefined });
    }
  }
  return edges;
}

/** `proxy/plan.ts` -> `proxy`; `gatehouse.ts` -> `gatehouse.ts` (a file of its own floor). */
const folderOf = (file: string) => (file.includes('/') ? file.slice(0, file.indexOf('/')) : file);

/** A cycle in a directed graph, as the list of its nodes, or undefined. */
function findCycle(nodes: Iterable<string>, next: (n: string) => Iterable<string>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === 'done') return undefined;
    if (state.get(n) === 'open') return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, 'open');
    stack.push(n);
    for (const m of next(n)) {
      const cycle = visit(m);
      if (cycle !== undefined) return cycle;
    }
    stack.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const n of nodes) {
    const cycle = visit(n);
    if (cycle !== undefined) return cycle;
  }
  return undefined;
}

const CONCERNS = ['routing', 'resilience', 'security', 'quota', 'webhook', 'delivery', 'cache', 'budget', 'telemetry'];

describe('architecture', () => {
  const edges = importGraph();
  const between = edges.filter((e) => folderOf(e.from) !== folderOf(e.to));

  it('the ground floor (core/) imports nothing of ours', () => {
    expect(between.filter((e) => folderOf(e.from) === 'core').map((e) => `${e.from} -> ${e.to}`)).toEqual([]);
  });

  it('config imports only config and core; stores only config and core', () => {
    const bad = between.filter(
      (e) => (folderOf(e.from) === 'config' && folderOf(e.to) !== 'core') || (folderOf(e.from) === 'stores' && !['core', 'config'].includes(folderOf(e.to))),
    );
    expect(bad.map((e) => `${e.from} -> ${e.to}`)).toEqual([]);
  });

  it('concerns never import proxy/, admin/ or the composition root, and only types of each other', () => {
    const bad = between.filter((e) => {
      const from = folderOf(e.from);
      const to = folderOf(e.to);
      if (!CONCERNS.includes(from)) return false;
      if (['core', 'config', 'stores'].includes(to)) return false;
      if (CONCERNS.includes(to)) return !e.typeOnly || (from === 'resilience' && to === 'telemetry');
      return true;
    });
    expect(bad.map((e) => `${e.from} -> ${e.to}${e.typeOnly ? ' (type)' : ''}`)).toEqual([]);
  });

  it('resilience never imports telemetry, not even its types', () => {
    expect(between.filter((e) => folderOf(e.from) === 'resilience' && folderOf(e.to) === 'telemetry').map((e) => e.from)).toEqual([]);
  });

  it('the folder graph has no cycle', () => {
    const next = new Map<string, Set<string>>();
    for (const e of between) {
      const set = next.get(folderOf(e.from)) ?? new Set<string>();
      set.add(folderOf(e.to));
      next.set(folderOf(e.from), set);
    }
    expect(findCycle(next.keys(), (n) => next.get(n) ?? [])).toBeUndefined();
  });

  it('no two modules import each other, even for types', () => {
    const next = new Map<string, Set<string>>();
    for (const e of edges) {
      const set = next.get(e.from) ?? new Set<string>();
      set.add(e.to);
      next.set(e.from, set);
    }
    expect(findCycle(next.keys(), (n) => next.get(n) ?? [])).toBeUndefined();
  });

  it('sees the imports it checks (the graph is not empty)', () => {
    expect(edges.length).toBeGreaterThan(200);
    expect(edges.some((e) => e.from === 'proxy/plan.ts' && e.to === 'core/send.ts')).toBe(true);
  });
});
