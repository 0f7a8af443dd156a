import type { z } from 'zod';

/*
 * "Did you mean" for unknown keys: the keys the schema allows where a mistyped one was found,
 * read from the schema itself so that no list of keys is kept by hand.
 */

type Schema = z.core.$ZodType;

/** The keys the object schema at `path` allows, given the value written there (it picks a union's branch). */
export function allowedKeys(root: Schema, path: readonly PropertyKey[], written: unknown): string[] {
  let nodes: Schema[] = [root];
  for (const segment of path) nodes = nodes.flatMap((n) => objectsOrSelf(n)).flatMap((n) => child(n, segment));
  const objects = nodes.flatMap((n) => objectsOrSelf(n)).filter((n) => n._zod.def.type === 'object');
  const fitting = objects.filter((o) => discriminatorsFit(o, written));
  return [...new Set((fitting.length > 0 ? fitting : objects).flatMap((o) => Object.keys(shapeOf(o))))];
}

/** The closest allowed key, when it is close enough to be the one meant. */
export function didYouMean(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const d = candidate.toLowerCase() === key.toLowerCase() ? 0 : distance(key, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= (key.length <= 4 ? 1 : key.length <= 8 ? 2 : 3) ? best : undefined;
}

/** Unwraps optional/default/pipe/union layers down to the schemas a value is checked against. */
function objectsOrSelf(node: Schema): Schema[] {
  const def = node._zod.def as unknown as { type: string; innerType?: Schema; in?: Schema; options?: Schema[]; getter?: () => Schema };
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'nonoptional':
    case 'readonly':
    case 'catch':
      return objectsOrSelf(def.innerType!);
    case 'pipe':
      return objectsOrSelf(def.in!);
    case 'union':
      return def.options!.flatMap((o) => objectsOrSelf(o));
    case 'lazy':
      return objectsOrSelf(def.getter!());
    default:
      return [node];
  }
}

function child(node: Schema, segment: PropertyKey): Schema[] {
  const def = node._zod.def as unknown as { type: string; element?: Schema; valueType?: Schema };
  switch (def.type) {
    case 'object': {
      const next = shapeOf(node)[String(segment)];
      return next === undefined ? [] : [next];
    }
    case 'array':
      return typeof segment === 'number' ? [def.element!] : [];
    case 'record':
      return [def.valueType!];
    default:
      return [];
  }
}

const shapeOf = (node: Schema) => (node._zod.def as unknown as { shape: Record<string, Schema> }).shape;

/** A union branch fits when each of its literal keys (a discriminator) has the value written, if any. */
function discriminatorsFit(object: Schema, written: unknown): boolean {
  if (written === null || typeof written !== 'object') return true;
  return Object.entries(shapeOf(object)).every(([key, s]) => {
    const def = s._zod.def as unknown as { type: string; values?: unknown[] };
    if (def.type !== 'literal' || !Object.hasOwn(written, key)) return true;
    return def.values!.includes((written as Record<string, unknown>)[key]);
  });
}

/** Optimal string alignment distance: Levenshtein plus the swap of two neighbours (`tiemout`). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}
