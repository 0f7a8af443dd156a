import { resolve } from 'node:path';
import { MAX_REFERENCED_BYTES, readBoundedFile, whyUnreadable } from './read.js';
import { fileVersion } from './watch.js';

export interface InterpolationProblem {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

export interface Interpolated {
  readonly value: unknown;
  /** Every file `${file:}` read, with its version as read: a change to one is a config change. */
  readonly files: ReadonlyMap<string, string>;
  /** Paths whose value came from `${env:}` or `${file:}`: they count as secrets. */
  readonly secretPaths: readonly (readonly PropertyKey[])[];
  readonly problems: readonly InterpolationProblem[];
  /** With `optional`: references left as placeholders, each with how to write its string with another one. */
  readonly skipped: readonly SkippedReference[];
}

export interface SkippedReference extends InterpolationProblem {
  /** The string as written, with `placeholder` where a missing value would be. */
  render(placeholder: string): string;
}

export interface InterpolationSources {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Relative `${file:}` paths resolve against this folder (the config file's). */
  readonly baseDir: string;
  readonly readFile?: (path: string) => string;
  /**
   * `validate --env-optional`: a variable that is not set, or a file that does not exist, becomes
   * a placeholder reported in `skipped`, not a problem (CI without production secrets).
   */
  readonly optional?: boolean;
}

const REF = /\$\{(env|file):([^}]*)\}/g;

/**
 * Replaces `${env:NAME}` and `${file:/path}` in every string of a parsed YAML value. One trailing
 * newline of a file is dropped. A missing variable or file is a problem at that value's path.
 */
export function interpolate(root: unknown, sources: InterpolationSources): Interpolated {
  const secretPaths: PropertyKey[][] = [];
  const problems: InterpolationProblem[] = [];
  const files = new Map<string, string>();
  const skipped: SkippedReference[] = [];
  const readFile = sources.readFile ?? ((p: string) => readBoundedFile(p, MAX_REFERENCED_BYTES));

  const walk = (value: unknown, path: PropertyKey[]): unknown => {
    if (typeof value === 'string') {
      if (!value.includes('${')) return value;
      let replaced = false;
      const missing: string[] = [];
      /** Each reference's value, or undefined where a placeholder goes. */
      const resolved: (string | undefined)[] = [];
      value.replace(REF, (_all, kind: string, name: string) => {
        replaced = true;
        if (kind === 'env') {
          const v = sources.env[name];
          if (v === undefined) missing.push(`environment variable ${name} is not set`);
          resolved.push(v);
          return '';
        }
        const file = resolve(sources.baseDir, name);
        if (!files.has(file)) files.set(file, fileVersion(file)); // before the read: a write during it is a change
        try {
          const text = readFile(file);
          resolved.push(text.endsWith('\n') ? text.slice(0, text.endsWith('\r\n') ? -2 : -1) : text);
        } catch (err) {
          const why = whyUnreadable(err);
          if (sources.optional === true && why === 'ENOENT') missing.push(`file ${file} does not exist`);
          else problems.push({ path, message: `cannot read file ${file} (${why})` });
          resolved.push(undefined);
        }
        return '';
      });
      const render = (placeholder: string) => {
        let i = 0;
        return value.replace(REF, () => resolved[i++] ?? placeholder);
      };
      if (replaced) secretPaths.push(path);
      if (missing.length > 0 && sources.optional === true) {
        skipped.push({ path, message: missing.join('; '), render });
      } else {
        for (const message of missing) problems.push({ path, message });
      }
      return render('');
    }
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i]));
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, [...path, k]);
      return out;
    }
    return value;
  };

  return { value: walk(root, []), files, secretPaths, problems, skipped };
}
