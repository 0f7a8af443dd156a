import { z } from 'zod';
import { ConfigSchema } from './schema.js';

/*
 * config/gatehouse.schema.json: the JSON Schema editors use to complete and check the YAML,
 * generated from the loader's own schema (`npm run schema`), input side: what users write,
 * durations and sizes as strings. A test keeps the committed file current.
 */

/** What `${env:NAME}` and `${file:/path}` look like: a string with one may be anything once interpolated. */
const INTERPOLATED = { type: 'string', pattern: '\\$\\{(?:env|file):[^}]*\\}' } as const;

type Node = Record<string, unknown>;

/** The formats of JSON Schema 2020-12 (§7.3) that zod emits; any other it emits is its own name. */
const STANDARD_FORMATS = new Set(['uri', 'email', 'uuid', 'date-time', 'date', 'time', 'duration', 'ipv4', 'ipv6', 'hostname']);

export function configJsonSchema(): Node {
  const generated = z.toJSONSchema(ConfigSchema, { io: 'input', target: 'draft-2020-12', unrepresentable: 'any' }) as Node;
  const { $schema, ...rest } = generated;
  return {
    $schema,
    title: 'gatehouse config',
    description: 'The gatehouse config file (config/gatehouse.yaml). Generated from src/config/schema.ts by `npm run schema`; do not edit.',
    ...(allowInterpolation(rest) as Node),
  };
}

/** The file's text, as committed. */
export function renderConfigJsonSchema(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}

/**
 * The loader accepts `${env:}`/`${file:}` in any string, and checks the value it becomes; the
 * schema cannot see that value. A string with a pattern, a format or a fixed set of values also
 * accepts a string with a reference, so an editor does not flag `endpoint: http://${env:HOST}:4318`.
 */
function allowInterpolation(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(allowInterpolation);
  if (node === null || typeof node !== 'object') return node;
  const out: Node = {};
  for (const [key, value] of Object.entries(node as Node)) {
    // zod names its own checks as formats (starts_with, with its pattern beside it): not JSON Schema's
    if (key === 'format' && !STANDARD_FORMATS.has(value as string)) continue;
    // property names and patterns are keys, not values: they cannot be interpolated
    out[key] = key === 'properties' ? mapValues(value as Node, allowInterpolation) : key === 'propertyNames' ? value : allowInterpolation(value);
  }
  const constrained = out.type === 'string' && ('pattern' in out || 'format' in out || 'enum' in out || 'const' in out);
  if (!constrained) return out;
  const { description, default: fallback, ...check } = out;
  return {
    ...(description === undefined ? {} : { description }),
    ...(fallback === undefined ? {} : { default: fallback }),
    anyOf: [check, INTERPOLATED],
  };
}

const mapValues = (o: Node, f: (v: unknown) => unknown): Node => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));
