import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Alias, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { ConfigError, formatPath, type ConfigProblem } from './errors.js';
import { fileProblems } from './files.js';
import { interpolate, type SkippedReference } from './interpolate.js';
import { MAX_CONFIG_BYTES, readBoundedFile, whyUnreadable } from './read.js';
import { ConfigSchema, crossCheck, name, type Config } from './schema.js';
import { REDACTED } from './secret.js';
import { allowedKeys, didYouMean } from './suggest.js';

export interface LoadedConfig {
  readonly config: Config;
  /** The config as written (after interpolation), secrets as `***`: what `/admin/config` shows. */
  readonly redacted: unknown;
  readonly file: string;
  /** sha256 of the config after interpolation: a reload that changes nothing is a no-op. */
  readonly hash: string;
  /** The files `${file:}` read (certificates, secrets) and their versions: watched like the config file. */
  readonly files: ReadonlyMap<string, string>;
  /** With `envOptional`: each value left unchecked, located, saying which variable or file was missing. */
  readonly skipped: readonly ConfigProblem[];
}

export interface LoadOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Folder that relative `${file:}` paths resolve against; default: the config file's. */
  readonly baseDir?: string;
  /**
   * Check the files the config names (certificates, keys, JWKS) — default true. Off for
   * documentation examples, which name files of a production machine.
   */
  readonly checkFiles?: boolean;
  /** Reads `${file:}` references (default: the file system); the docs test stubs it. */
  readonly readFile?: (path: string) => string;
  /**
   * `validate --env-optional`: an unset `${env:}` variable, and a `${file:}`, certificate, key or
   * JWKS file that does not exist, are placeholders: listed in `skipped`, their values not checked.
   */
  readonly envOptional?: boolean;
}

export function loadConfigFile(file: string, options: LoadOptions = {}): LoadedConfig {
  let text: string;
  try {
    text = readBoundedFile(file, MAX_CONFIG_BYTES);
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, path: '', message: `cannot read config file (${whyUnreadable(err)})` }]);
  }
  return loadConfigText(text, file, { baseDir: dirname(resolve(file)), ...options });
}

/** Parses, interpolates and validates; throws a ConfigError that lists every problem found. */
export function loadConfigText(text: string, file: string, options: LoadOptions = {}): LoadedConfig {
  try {
    return parseAndValidate(text, file, options);
  } catch (err) {
    // the stack ran out (nesting thousands deep), or a string or array grew past V8's limits
    if (err instanceof RangeError) throw new ConfigError([{ file, line: 1, col: 1, path: '', message: `too large or nested too deeply to load (${err.message})` }]);
    throw err;
  }
}

function parseAndValidate(text: string, file: string, options: LoadOptions): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number, path: string, message: string): ConfigProblem => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, col, path, message };
  };

  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => at(e.pos[0], '', `invalid YAML: ${firstLine(e.message)}${flowHint(text, e.pos[0])}`)));
  }

  const bomb = aliasExpansion(doc.contents);
  if (bomb !== undefined) {
    const offset = bomb.alias.range?.[0] ?? 0;
    const message = bomb.cycle
      ? `YAML alias *${bomb.alias.source} refers to a node that contains it`
      : `YAML aliases expand to more than ${MAX_ALIAS_NODES} nodes (passed at *${bomb.alias.source})`;
    throw new ConfigError([at(offset, formatPath(bomb.path), message)]);
  }
  let raw: unknown;
  try {
    // aliasExpansion() bounded the expansion, and refused a self-referencing alias
    raw = doc.toJS({ maxAliasCount: -1 });
  } catch (err) {
    throw new ConfigError([at(0, '', `invalid YAML: ${firstLine((err as Error).message)}`)]);
  }
  const interpolated = interpolate(raw, {
    env: options.env ?? process.env,
    baseDir: options.baseDir ?? process.cwd(),
    readFile: options.readFile,
    optional: options.envOptional,
  });
  const { files, secretPaths, problems: interpolationProblems } = interpolated;
  const value = withPlaceholders(interpolated.value, interpolated.skipped);
  const skippedPaths = interpolated.skipped.map((s) => s.path);
  /** A problem about a value that is a placeholder says nothing about the real one. */
  const unchecked = (path: readonly PropertyKey[]) => skippedPaths.some((s) => s.every((k, i) => path[i] === k));
  const secretKeys = new Set(secretPaths.map((p) => formatPath(p)));
  const isSecret = (path: readonly PropertyKey[]) => secretKeys.has(formatPath(path)) || isSecretKeyPath(path);

  const show = (path: readonly PropertyKey[]) => displayPath(path, value, isSecret);
  const problems: ConfigProblem[] = interpolationProblems.map((p) => at(offsetOf(doc, p.path), show(p.path), p.message));
  const seen = new Set(problems.map((p) => p.path));

  const parsed = ConfigSchema.safeParse(value, { reportInput: true });
  if (!parsed.success) {
    for (const issue of flattenIssues(parsed.error.issues)) {
      if (issue.code === 'unrecognized_keys') {
        const allowed = allowedKeys(ConfigSchema, issue.path, issue.input);
        for (const key of issue.keys) {
          const path = [...issue.path, key];
          const meant = didYouMean(key, allowed);
          problems.push(at(offsetOf(doc, path, 'key'), show(path), meant === undefined ? 'unknown key' : `unknown key (did you mean ${meant}?)`));
        }
        continue;
      }
      const path = show(issue.path);
      if (seen.has(path) || unchecked(issue.path)) continue; // the interpolation problem already explains it
      problems.push(at(offsetOf(doc, issue.path), path, describeIssue(issue, isSecret(issue.path))));
    }
  }

  const quote = (v: unknown, path: readonly PropertyKey[]) => (isSecret(path) ? REDACTED : JSON.stringify(v));
  for (const p of crossCheck(value, quote)) if (!unchecked(p.path)) problems.push(at(offsetOf(doc, p.path), show(p.path), p.message));
  const skipped = interpolated.skipped.map((s) => at(offsetOf(doc, s.path), show(s.path), `not checked: ${s.message}`));
  if (parsed.success && options.checkFiles !== false) {
    for (const p of fileProblems(parsed.data)) {
      if (unchecked(p.path)) continue;
      if (p.missing === true && options.envOptional === true) skipped.push(at(offsetOf(doc, p.path), show(p.path), `not checked: ${p.message}`));
      else problems.push(at(offsetOf(doc, p.path), show(p.path), p.message));
    }
  }
  if (!parsed.success && problems.length === 0) {
    // only placeholders failed, and no placeholder fits them: the rest cannot be checked without the values
    for (const s of interpolated.skipped) problems.push(at(offsetOf(doc, s.path), show(s.path), `needs a value to be checked: ${s.message}`));
  }

  if (problems.length > 0 || !parsed.success) {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(problems, skipped.sort((a, b) => a.line - b.line || a.col - b.col));
  }

  return {
    config: parsed.data,
    redacted: redact(value, [], isSecret),
    file,
    // of the interpolated value, not the text: a rotated `${file:}` secret is a change, a comment is not
    hash: createHash('sha256').update(JSON.stringify(value)).digest('hex'),
    files,
    skipped: skipped.sort((a, b) => a.line - b.line || a.col - b.col),
  };
}

/**
 * Placeholders tried, in order, for a value whose `${env:}` or `${file:}` is missing: the first
 * one the schema accepts at that place is kept, so the rest of the config is still checked.
 */
const PLACEHOLDERS = [
  'placeholder',
  '/placeholder',
  'http://placeholder.invalid',
  'redis://placeholder.invalid:6379',
  '127.0.0.1:0',
  '1s',
  '1kb',
  `whsec_${Buffer.from('placeholder-secret').toString('base64')}`,
];

function withPlaceholders(value: unknown, skipped: readonly SkippedReference[]): unknown {
  if (skipped.length === 0) return value;
  const set = (root: unknown, path: readonly PropertyKey[], v: string) => {
    let parent = root as Record<PropertyKey, unknown>;
    for (const key of path.slice(0, -1)) parent = parent[key] as Record<PropertyKey, unknown>;
    parent[path[path.length - 1]!] = v;
  };
  const fits = (root: unknown, path: readonly PropertyKey[]) => {
    const parsed = ConfigSchema.safeParse(root);
    return parsed.success || !parsed.error.issues.some((i) => i.path.length >= path.length && path.every((k, n) => i.path[n] === k));
  };
  for (const s of skipped) {
    if (s.path.length === 0) continue;
    const placeholder = PLACEHOLDERS.find((p) => {
      set(value, s.path, s.render(p));
      return fits(value, s.path);
    });
    set(value, s.path, s.render(placeholder ?? PLACEHOLDERS[0]!));
  }
  return value;
}

/** SPEC §3.1: what YAML aliases may add to a document, counted in nodes (the billion-laughs bound). */
export const MAX_ALIAS_NODES = 10_000;

/**
 * Finds the alias at which the nodes that aliases add to the document pass MAX_ALIAS_NODES, or
 * one that refers to its own anchor (a cycle, which no config needs). Linear in the document: the
 * expanded size of each node is computed once. An alias refers to the last node with its anchor
 * before it, as in the YAML spec and yaml's own resolution.
 */
function aliasExpansion(root: unknown): { alias: Alias; path: PropertyKey[]; cycle: boolean } | undefined {
  const anchors = new Map<string, Node>();
  const sizes = new Map<Node, number>();
  const inProgress = new Set<Node>();
  let added = 0;
  let found: { alias: Alias; path: PropertyKey[]; cycle: boolean } | undefined;
  /** Expanded size of `node`; every node is visited once, in document order, so targets are sized first. */
  const size = (node: unknown, path: PropertyKey[]): number => {
    if (found !== undefined) return 0;
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      if (target === undefined) return 1; // yaml reports the unresolved alias itself
      const cycle = inProgress.has(target);
      const n = cycle ? Infinity : (sizes.get(target) ?? 1);
      added += n;
      if (added > MAX_ALIAS_NODES) found = { alias: node, path, cycle };
      return n;
    }
    if (!isMap(node) && !isSeq(node) && !isScalar(node)) return 1;
    if (node.anchor !== undefined) anchors.set(node.anchor, node);
    if (isScalar(node)) {
      sizes.set(node, 1);
      return 1;
    }
    inProgress.add(node);
    let n = 1;
    node.items.forEach((item, i) => {
      if (isPair(item)) {
        const key = isScalar(item.key) ? (item.key.value as PropertyKey) : i;
        n += size(item.key, path) + size(item.value, [...path, key]);
      } else {
        n += size(item, [...path, i]);
      }
    });
    inProgress.delete(node);
    sizes.set(node, n);
    return n;
  };
  size(root, []);
  return found;
}

/**
 * A path as problems print it: `routes[3](stripe-charges).upstream`, so a route is found by its
 * name in a long file. The name is left out when it is not a plain name or came from `${env:}`.
 */
function displayPath(path: readonly PropertyKey[], value: unknown, isSecret: (p: readonly PropertyKey[]) => boolean): string {
  const text = formatPath(path);
  if (path[0] !== 'routes' || typeof path[1] !== 'number') return text;
  const routes = (value as { routes?: unknown } | null)?.routes;
  const routeName = Array.isArray(routes) ? (routes[path[1]] as { name?: unknown } | null)?.name : undefined;
  if (!name.safeParse(routeName).success || isSecret(['routes', path[1], 'name'])) return text;
  const head = `routes[${path[1]}]`;
  return `${head}(${routeName as string})${text.slice(head.length)}`;
}

/** Keys that hold secrets even when written literally in the file (SPEC §1). */
export function isSecretKeyPath(path: readonly PropertyKey[]): boolean {
  const key = path[path.length - 1];
  const parent = path[path.length - 2];
  if (key === 'clientSecret' || key === 'secret' || key === 'secrets' || key === 'token') return true;
  if (key === 'key' && parent === 'tls') return true;
  if (key === 'value' && parent === 'header') return true;
  // headers sent to the OTLP collector usually carry an API key
  return parent === 'headers' && (path[path.length - 3] === 'traces' || path[path.length - 3] === 'otlp');
}

function redact(value: unknown, path: PropertyKey[], isSecret: (p: readonly PropertyKey[]) => boolean): unknown {
  if (path.length > 0 && isSecret(path) && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    return Array.isArray(value) ? value.map(() => REDACTED) : REDACTED;
  }
  if (Array.isArray(value)) return value.map((v, i) => redact(v, [...path, i], isSecret));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redact(v, [...path, k], isSecret);
    return out;
  }
  return value;
}

type Issue = z.core.$ZodIssue;

/** A union's issues come nested; report the branch that got furthest, as a user would read it. */
function flattenIssues(issues: readonly Issue[]): Issue[] {
  const out: Issue[] = [];
  for (const issue of issues) {
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const best = [...issue.errors].sort((a, b) => depth(b) - depth(a) || a.length - b.length)[0]!;
      out.push(...flattenIssues(best.map((i) => ({ ...i, path: [...issue.path, ...i.path] }))));
    } else {
      out.push(issue);
    }
  }
  return out;
}

const depth = (issues: readonly Issue[]) => Math.max(0, ...issues.map((i) => i.path.length));

function describeIssue(issue: Issue, secret: boolean): string {
  const got = (v: unknown) => (secret ? REDACTED : describeValue(v));
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      // a schema's own wording ("must be an integer >= 1") beats zod's generic one
      if (!issue.message.startsWith('Invalid input')) return `${issue.message} (got ${got(issue.input)})`;
      return `must be ${article(issue.expected)} (got ${got(issue.input)})`;
    case 'too_small':
      if (issue.origin === 'array') return `${issue.message}`;
      return `${issue.message} (got ${got(issue.input)})`;
    case 'too_big':
      return `${issue.message} (got ${got(issue.input)})`;
    case 'invalid_value':
      return `must be ${issue.values.length === 1 ? '' : 'one of '}${issue.values.map((v) => JSON.stringify(v)).join(', ')} (got ${got(issue.input)})`;
    case 'invalid_format':
      return `${issue.message} (got ${got(issue.input)})`;
    case 'custom':
      return (issue.params as { got?: boolean } | undefined)?.got === true ? `${issue.message} (got ${got(issue.input)})` : issue.message;
    case 'not_multiple_of':
    case 'invalid_key':
    case 'invalid_element':
    case 'invalid_union':
    case 'unrecognized_keys':
      return issue.message;
  }
}

function article(expected: string): string {
  switch (expected) {
    case 'int':
      return 'an integer';
    case 'object':
    case 'record':
      return 'a mapping';
    case 'array':
      return 'a list';
    default:
      return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
  }
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
}

const firstLine = (s: string) => s.split('\n')[0] ?? s;

/** `[${env:X}]` is not valid YAML: `{` and `}` are flow indicators. Say how to write it. */
function flowHint(text: string, offset: number): string {
  const start = text.lastIndexOf('\n', offset - 1) + 1;
  const end = text.indexOf('\n', offset);
  return text.slice(start, end < 0 ? undefined : end).includes('${')
    ? ' (inside [ ] or { }, quote a value that uses ${...}: "${env:NAME}")'
    : '';
}

/**
 * Where a path points in the YAML text: the value's offset, or the key's when the value is empty
 * (or when asked for the key). A key that is absent points at the mapping that lacks it: that
 * mapping's own key (`app:` for `upstreams.app.endpoints`), or its start when it has none.
 */
function offsetOf(doc: Document, path: readonly PropertyKey[], want: 'value' | 'key' = 'value'): number {
  let node: unknown = doc.contents;
  /** Where something missing below `node` is reported. */
  let anchor = (node as Node | null)?.range?.[0] ?? 0;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i];
    let next: unknown;
    let keyNode: Node | undefined;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && (isScalar(p.key) ? p.key.value : p.key) === segment);
      if (pair) {
        keyNode = pair.key as Node;
        next = pair.value ?? null;
      }
    } else if (isSeq(node) && typeof segment === 'number') {
      next = node.items[segment];
    }
    if (next === undefined) return anchor;
    const keyAt = keyNode?.range?.[0];
    const isLast = i === path.length - 1;
    if (isLast && want === 'key' && keyAt !== undefined) return keyAt;
    const range = (next as Node | null)?.range;
    if (!range || (isScalar(next) && next.value === null)) return keyAt ?? anchor;
    if (isLast) return range[0];
    anchor = keyAt ?? range[0];
    node = next;
  }
  return anchor;
}
