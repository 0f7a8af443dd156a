import { readdirSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { describe, expect, it } from 'vitest';
import { isMap, parse, parseAllDocuments, parseDocument, stringify } from 'yaml';
import { ConfigError } from '../../../src/config/errors.js';
import { renderConfigJsonSchema } from '../../../src/config/json-schema.js';
import { loadConfigFile, loadConfigText, type LoadOptions } from '../../../src/config/load.js';
import { docPages, fencedBlocks } from '../../helpers/markdown.js';

/*
 * The docs cannot drift from the loader: every shipped config file and every YAML block in
 * README.md and in every page under docs/ goes through the real loader (schema, cross-checks, interpolation).
 *
 * The rules for the blocks of those pages:
 * - A block fenced ```yaml is gatehouse config.
 *   - With a top-level `version:` key it is a whole config file and is validated as it is.
 *   - Otherwise it is a fragment, laid over BASE below: a top-level mapping whose key BASE
 *     also has as a mapping (upstreams) is merged into BASE's, any other key is set as
 *     written. A fragment that is a list is taken as the `routes:` list. So a fragment can
 *     use BASE's listeners `inbound`/`outbound` and upstreams `store`/`stripe`, or bring its own.
 * - A block fenced ```yaml WORD (```yaml kubernetes) is another tool's YAML: it must parse,
 *   and each `*.yaml` entry of a ConfigMap's `data` in it is validated as a whole config.
 * - Every `${env:NAME}` resolves to a placeholder string, every `${file:PATH}` to placeholder
 *   content, so examples may reference secrets that only exist in production.
 * - Each config, as written, also validates against config/gatehouse.schema.json (the JSON Schema
 *   editors use), with a real JSON Schema validator (ajv, draft 2020-12): the two cannot disagree.
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const BASE = {
  version: 1,
  listeners: [
    { name: 'inbound', address: '127.0.0.1:8080' },
    { name: 'outbound', address: '127.0.0.1:15001' },
  ],
  upstreams: {
    store: { endpoints: ['http://127.0.0.1:3000'] },
    stripe: { endpoints: ['https://api.stripe.com'] },
  },
};

const PLACEHOLDER = 'placeholder-value';
const anyEnv = new Proxy<Record<string, string>>({}, { get: (_target, key) => (typeof key === 'string' ? PLACEHOLDER : undefined) });
// Examples name certificate and JWKS files of a production machine: those are not checked here.
const DOC_OPTIONS: LoadOptions = { env: anyEnv, readFile: () => PLACEHOLDER, checkFiles: false };

/** Fenced blocks whose info string is `yaml` or starts with `yaml `, with the line they start on. */
const yamlBlocks = (markdown: string) => fencedBlocks(markdown).filter((b) => /^yaml\b/.test(b.info));

/** A docs fragment as a whole config, by the rules above. */
function asWholeConfig(text: string): string {
  const doc = parseDocument(text);
  if (isMap(doc.contents) && doc.contents.has('version')) return text;
  const fragment: unknown = doc.toJS();
  const config: Record<string, unknown> = structuredClone(BASE);
  if (Array.isArray(fragment)) {
    config.routes = fragment;
  } else if (fragment !== null && typeof fragment === 'object') {
    for (const [key, value] of Object.entries(fragment)) {
      const base = config[key];
      config[key] = isPlainObject(base) && isPlainObject(value) ? { ...base, ...value } : value;
    }
  } else {
    throw new Error('a yaml block must be a mapping or a list');
  }
  return stringify(config);
}

const SCHEMA_FILE = `${ROOT}config/gatehouse.schema.json`;
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
(addFormats as unknown as { default: (a: Ajv2020) => void }).default(ajv);
const validateJsonSchema = ajv.compile(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as object);

/** What the JSON Schema says about a config as written (before interpolation): '' when valid. */
function jsonSchemaProblems(yaml: string): string {
  if (validateJsonSchema(parse(yaml))) return '';
  return (validateJsonSchema.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`).join('\n');
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function problemsOf(load: () => unknown): string {
  try {
    load();
    return '';
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
}

describe('shipped config files', () => {
  const examples = readdirSync(`${ROOT}config/examples`).filter((f) => f.endsWith('.yaml'));
  const files = ['config/gatehouse.yaml', ...examples.map((f) => `config/examples/${f}`)];

  it('ships the annotated default and the demo config', () => {
    expect(files).toContain('config/gatehouse.yaml');
    expect(files).toContain('config/examples/demo.yaml');
    expect(examples.length).toBeGreaterThanOrEqual(3);
  });

  it.each(files)('%s is a valid config', (file) => {
    expect(problemsOf(() => loadConfigFile(`${ROOT}${file}`, DOC_OPTIONS))).toBe('');
  });

  it.each(files)('%s validates against the JSON Schema, which its first line names for editors', (file) => {
    const text = readFileSync(`${ROOT}${file}`, 'utf8');
    expect(jsonSchemaProblems(text)).toBe('');
    const line = /^# yaml-language-server: \$schema=(\S+)\n/.exec(text);
    expect(line?.[1]).toBe(relative(dirname(`${ROOT}${file}`), SCHEMA_FILE));
    expect(resolve(dirname(`${ROOT}${file}`), line![1]!)).toBe(resolve(SCHEMA_FILE));
  });

  it.each(['config/gatehouse.yaml', 'config/examples/demo.yaml'])('%s runs as it is: no variable or file to provide', (file) => {
    expect(problemsOf(() => loadConfigFile(`${ROOT}${file}`, { env: {}, readFile: () => PLACEHOLDER }))).toBe('');
  });
});

describe('yaml blocks of README.md and docs/', () => {
  const pages = docPages(ROOT);
  const blocks = pages.flatMap((page) => yamlBlocks(readFileSync(`${ROOT}${page}`, 'utf8')).map((b) => ({ ...b, page })));

  it('has yaml examples to check (the extractor finds them in README.md and in docs/)', () => {
    expect(pages).toEqual(expect.arrayContaining(['README.md', 'docs/routing.md', 'docs/reference/config.md']));
    expect(blocks.filter((b) => b.page === 'README.md' && b.info === 'yaml').length).toBeGreaterThanOrEqual(1);
    expect(blocks.filter((b) => b.page.startsWith('docs/') && b.info === 'yaml').length).toBeGreaterThanOrEqual(30);
  });

  it.each(blocks.map((b) => [`${b.page} line ${b.line} (${b.info})`, b] as const))('block in %s is valid', (_name, block) => {
    if (block.info === 'yaml') {
      const whole = asWholeConfig(block.text);
      const problems = problemsOf(() => loadConfigText(whole, `${block.page} block at line ${block.line}`, DOC_OPTIONS));
      expect(problems, `validated as:\n${whole}`).toBe('');
      expect(jsonSchemaProblems(whole), `against the JSON Schema, as:\n${whole}`).toBe('');
      return;
    }
    const docs = parseAllDocuments(block.text);
    for (const doc of Array.isArray(docs) ? docs : [docs]) {
      expect(doc.errors.map((e) => e.message)).toEqual([]);
      const value = doc.toJS() as { kind?: unknown; data?: Record<string, unknown> } | null;
      if (value?.kind !== 'ConfigMap') continue;
      for (const [name, text] of Object.entries(value.data ?? {})) {
        if (!name.endsWith('.yaml') || typeof text !== 'string') continue;
        expect(problemsOf(() => loadConfigText(text, `${block.page} line ${block.line} ConfigMap ${name}`, DOC_OPTIONS))).toBe('');
        expect(jsonSchemaProblems(text)).toBe('');
      }
    }
  });
});

describe('config/gatehouse.schema.json', () => {
  it('is current: `npm run schema` writes it from the loader\'s schema', () => {
    expect(readFileSync(SCHEMA_FILE, 'utf8'), 'run `npm run schema` and commit the file').toBe(renderConfigJsonSchema());
  });

  it('describes every key, so an editor can explain it', () => {
    const missing: string[] = [];
    const walk = (node: unknown, path: string) => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${path}[${i}]`));
      if (node === null || typeof node !== 'object') return;
      for (const [key, value] of Object.entries(node)) {
        if (key === 'properties') {
          for (const [name, property] of Object.entries(value as Record<string, { description?: unknown }>)) {
            if (typeof property.description !== 'string') missing.push(`${path}.${name}`);
            walk(property, `${path}.${name}`);
          }
        } else {
          walk(value, `${path}/${key}`);
        }
      }
    };
    walk(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')), '');
    expect(missing).toEqual([]);
  });

  it('refuses what the loader refuses where a schema can tell, and accepts ${env:} anywhere in a string', () => {
    const base = 'version: 1\nlisteners: [{ name: in, address: 127.0.0.1:0 }]\n';
    expect(jsonSchemaProblems(base)).toBe('');
    expect(jsonSchemaProblems(`${base}upstreams: { app: { endpoints: [http://a:1], conectTimeout: 1s } }\n`)).toMatch(/additionalProperty.*conectTimeout/);
    expect(jsonSchemaProblems(`${base}shutdown: { drainTimeout: 20 }\n`)).not.toBe('');
    expect(jsonSchemaProblems(`${base}shutdown: { drainTimeout: soon }\n`)).not.toBe('');
    expect(jsonSchemaProblems(`${base}shutdown: { drainTimeout: "\${env:DRAIN}" }\ntelemetry: { traces: { endpoint: "http://\${env:HOST}:4318/v1/traces" } }\n`)).toBe('');
  });
});

describe('the fragment rules', () => {
  it('validates a whole config as written and lays a fragment over BASE', () => {
    const whole = 'version: 1\nlisteners: [{ name: a, address: 127.0.0.1:1 }]\n';
    expect(asWholeConfig(whole)).toBe(whole);
    const merged = parseDocument(asWholeConfig('upstreams: { erp: { endpoints: [http://erp:80] } }\nshutdown: { drainTimeout: 5s }\n')).toJS();
    expect(Object.keys(merged.upstreams)).toEqual(['store', 'stripe', 'erp']);
    expect(merged.shutdown).toEqual({ drainTimeout: '5s' });
    expect(parseDocument(asWholeConfig('- { name: r, listener: inbound, upstream: store }\n')).toJS().routes).toHaveLength(1);
  });

  it('reports a wrong fragment, so a broken docs example fails the suite', () => {
    const problems = problemsOf(() => loadConfigText(asWholeConfig('routes: [{ name: r, listener: inbound, upstream: nowhere, timeout: 5 }]\n'), 'x', DOC_OPTIONS));
    expect(problems).toContain('routes[0](r).timeout: must be a duration');
    expect(problems).toContain('routes[0](r).upstream: unknown upstream "nowhere"');
  });
});
