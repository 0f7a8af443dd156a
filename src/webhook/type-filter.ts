/**
 * A destination's `types`: exact event types, or globs where `*` matches any run of characters
 * (`.` and `/` included), so `charge.*` takes `charge.succeeded` and `charge.dispute.created`,
 * `orders/*` takes `orders/create`. Compiled once per plan: exact names into a Set, globs kept
 * for a matcher that never backtracks more than once per star (no regex is built from config).
 */
export type TypeFilter = (type: string | undefined) => boolean;

/** True when `glob` matches the whole of `text`; `*` is any run, every other character itself. */
export function matchesGlob(glob: string, text: string): boolean {
  let g = 0;
  let t = 0;
  let star = -1; // where the last `*` of the glob was
  let resume = 0; // where in the text that `*` matched up to
  while (t < text.length) {
    if (g < glob.length && glob[g] === '*') {
      star = g++;
      resume = t;
    } else if (g < glob.length && glob[g] === text[t]) {
      g++;
      t++;
    } else if (star >= 0) {
      // let the last star take one more character and try again from there
      g = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}

export const EVERY_TYPE: TypeFilter = () => true;

/**
 * The filter of a `types` list. An event whose provider names no type is wanted only where a
 * pattern is all stars (`*`, the default): a filter by name cannot tell what it is.
 */
export function compileTypeFilter(types: readonly string[]): TypeFilter {
  if (types.some((t) => /^\*+$/.test(t))) return EVERY_TYPE;
  const exact = new Set(types.filter((t) => !t.includes('*')));
  const globs = types.filter((t) => t.includes('*'));
  if (globs.length === 0) return function wantsType(type) {
    return type !== undefined && exact.has(type);
  };
  return function wantsType(type) {
    if (type === undefined) return false;
    if (exact.has(type)) return true;
    for (const glob of globs) if (matchesGlob(glob, type)) return true;
    return false;
  };
}
