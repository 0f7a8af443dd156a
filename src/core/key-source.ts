/**
 * `header:<name>` or `json:<dotted.path>` (config's KeySource): where a webhook's event id or an
 * ordering key is read from a request.
 */
export type KeySource = { readonly from: 'header'; readonly name: string } | { readonly from: 'json'; readonly path: readonly string[] };

/** What a key is read from: a header by lowercase name, and the body parsed as JSON (undefined when it is not). */
export interface KeyedRequest {
  header(lowerName: string): string | undefined;
  json(): unknown;
}

/** Reads the key; undefined when absent or not a scalar. */
export function readKey(req: KeyedRequest, source: KeySource): string | undefined {
  if (source.from === 'header') return req.header(source.name) || undefined;
  let node = req.json();
  for (const part of source.path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return typeof node === 'string' ? node || undefined : typeof node === 'number' || typeof node === 'boolean' ? String(node) : undefined;
}
