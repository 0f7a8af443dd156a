/** One problem in a config file, printed as `file:line:col path: message`. */
export interface ConfigProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly path: string;
  readonly message: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col} ${p.path || '(root)'}: ${p.message}`;
}

/** Thrown by the loader with every problem found, never just the first. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  /** What `validate --env-optional` left unchecked (placeholders for missing secrets). */
  readonly skipped: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[], skipped: readonly ConfigProblem[] = []) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
    this.skipped = skipped;
  }
}

/** `['routes', 2, 'retry', 'attempts']` -> `routes[2].retry.attempts` */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}
