import { hash } from 'node:crypto';

/**
 * What Shopify's GraphQL Admin API says about a query's cost, read from its JSON answer
 * (shopify.dev "API rate limits": `extensions.cost` with `requestedQueryCost`, `actualQueryCost`
 * and `throttleStatus`; a throttled query is an answer whose `errors[].extensions.code` is
 * `THROTTLED`, usually with HTTP 200).
 */
export interface CostReport {
  readonly requested: number | undefined;
  readonly actual: number | undefined;
  readonly throttled: boolean;
  readonly bucket: { readonly capacity: number; readonly available: number; readonly restoreRate: number } | undefined;
}

/** Where the cost is looked for in an answer that streamed: its last bytes (Shopify writes `extensions` last). */
export const TAIL_BYTES = 4096;

/**
 * The cost report of an answer: the whole JSON body (`whole`), or only the last bytes of one that
 * was too long to hold, where just the `cost` object is read (and THROTTLED cannot be: a
 * throttled answer carries no data, so it is never that long). undefined when nothing is readable.
 */
export function readCost(body: Buffer, whole: boolean): CostReport | undefined {
  let cost: unknown;
  let throttled = false;
  if (whole) {
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      return undefined;
    }
    if (!isRecord(doc)) return undefined;
    cost = isRecord(doc.extensions) ? doc.extensions.cost : undefined;
    if (Array.isArray(doc.errors)) throttled = doc.errors.some((e) => isRecord(e) && isRecord(e.extensions) && e.extensions.code === 'THROTTLED');
  } else {
    cost = tailObject(body.toString('utf8'), '"cost"');
  }
  if (!isRecord(cost)) return throttled ? { requested: undefined, actual: undefined, throttled, bucket: undefined } : undefined;
  const status = isRecord(cost.throttleStatus) ? cost.throttleStatus : undefined;
  const capacity = num(status?.maximumAvailable);
  const available = num(status?.currentlyAvailable);
  const restoreRate = num(status?.restoreRate);
  return {
    requested: num(cost.requestedQueryCost),
    actual: num(cost.actualQueryCost),
    throttled,
    bucket: capacity !== undefined && capacity > 0 && available !== undefined && restoreRate !== undefined && restoreRate > 0 ? { capacity, available, restoreRate } : undefined,
  };
}

/** The JSON object after the last `"name":` in `text`, or undefined when it is not whole there. */
function tailObject(text: string, name: string): unknown {
  const at = text.lastIndexOf(name);
  if (at < 0) return undefined;
  const open = text.indexOf('{', at + name.length);
  if (open < 0 || text.slice(at + name.length, open).trim() !== ':') return undefined;
  let depth = 0;
  let inString = false;
  for (let i = open; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) {
      try {
        return JSON.parse(text.slice(open, i + 1));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** Query texts longer than this are remembered by their hash. */
const MAX_QUERY_CHARS = 200;

/**
 * The identity of a GraphQL request's query: its text with every run of white space made one
 * space (so the same query from two call sites, indented differently, is one), or undefined when
 * the body is not a JSON object with a `query` string.
 */
export function queryKeyOf(body: Buffer | null): string | undefined {
  if (body === null || body.length === 0) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isRecord(doc) || typeof doc.query !== 'string') return undefined;
  const text = doc.query.replace(/\s+/g, ' ').trim();
  return text.length <= MAX_QUERY_CHARS ? text : `#${hash('sha256', text, 'base64url')}`;
}

/**
 * The last requested cost seen per query, in this process: what the next send of that query
 * reserves. Bounded: the oldest entry goes when it is full.
 */
export class QueryCosts {
  private readonly costs = new Map<string, number>();
  constructor(private readonly maxEntries = 10_000) {}

  get(key: string | undefined): number | undefined {
    return key === undefined ? undefined : this.costs.get(key);
  }

  set(key: string | undefined, cost: number): void {
    if (key === undefined) return;
    this.costs.delete(key);
    if (this.costs.size >= this.maxEntries) this.costs.delete(this.costs.keys().next().value!);
    this.costs.set(key, cost);
  }

  get size(): number {
    return this.costs.size;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** `X-Shopify-Shop-Api-Call-Limit: 32/40` -> used 32 of 40, or undefined. */
export function readCallLimit(value: string | undefined): { readonly used: number; readonly size: number } | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(value);
  if (m === null) return undefined;
  const size = Number(m[2]);
  return size > 0 ? { used: Number(m[1]), size } : undefined;
}
