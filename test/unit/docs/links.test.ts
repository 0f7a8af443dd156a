import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { allMarkdown, docPages, headingAnchors, links } from '../../helpers/markdown.js';

/*
 * Every relative link in the repository's Markdown (README.md, the other top-level pages and
 * docs/**) points at a file that exists, inside the repository, and at a heading that exists
 * when it names one. Links to the web are not fetched.
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const pages = allMarkdown(ROOT);
const anchorsOf = new Map<string, Set<string>>();
const anchors = (file: string) => {
  let set = anchorsOf.get(file);
  if (set === undefined) anchorsOf.set(file, (set = headingAnchors(readFileSync(join(ROOT, file), 'utf8'))));
  return set;
};

/** What is wrong with a link from `page`, or undefined when it resolves. */
function brokenLink(page: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto:, ...
  const hash = target.indexOf('#');
  const path = hash < 0 ? target : target.slice(0, hash);
  const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
  const file = path === '' ? page : normalize(join(dirname(page), decodeURIComponent(path)));
  if (file.startsWith('..') || relative(ROOT, join(ROOT, file)).startsWith('..')) return `${target} leaves the repository`;
  if (!existsSync(join(ROOT, file))) return `${target}: no file ${file}`;
  if (anchor === undefined) return undefined;
  if (!file.endsWith('.md') || statSync(join(ROOT, file)).isDirectory()) return `${target}: an anchor into a file that is not Markdown`;
  return anchors(file).has(anchor) ? undefined : `${target}: ${file} has no heading #${anchor}`;
}

describe('links in the Markdown pages', () => {
  it('finds the pages and their links (README.md links every docs page)', () => {
    expect(pages).toEqual(expect.arrayContaining(['README.md', 'CHANGELOG.md', 'CONTRIBUTING.md', 'SECURITY.md', 'docs/quotas.md']));
    const fromReadme = new Set(links(readFileSync(join(ROOT, 'README.md'), 'utf8')).map((l) => l.target.split('#')[0]));
    for (const page of docPages(ROOT).filter((p) => p.startsWith('docs/'))) expect(fromReadme, `README.md links ${page}`).toContain(page);
  });

  it.each(pages)('every relative link of %s resolves', (page) => {
    const broken = links(readFileSync(join(ROOT, page), 'utf8'))
      .map((l) => ({ ...l, problem: brokenLink(page, l.target) }))
      .filter((l) => l.problem !== undefined)
      .map((l) => `${page}:${l.line} ${l.problem}`);
    expect(broken).toEqual([]);
  });

  it('reports a missing file, a missing heading and a path out of the repository', () => {
    expect(brokenLink('README.md', 'docs/nowhere.md')).toContain('no file docs/nowhere.md');
    expect(brokenLink('README.md', 'docs/quotas.md#no-such-heading')).toContain('has no heading #no-such-heading');
    expect(brokenLink('docs/quotas.md', '../../shared/SPEC.md')).toContain('leaves the repository');
    expect(brokenLink('docs/reference/errors.md', '../quotas.md#queueing')).toBeUndefined();
    expect(brokenLink('README.md', 'https://example.com/x')).toBeUndefined();
  });

  it('anchors headings as GitHub does', () => {
    expect([...headingAnchors('# Quotas\n## Bulkhead: `maxConcurrent`\n### `bad_request`\n## Stores\n## Stores\n```\n# not a heading\n```\n')]).toEqual([
      'quotas',
      'bulkhead-maxconcurrent',
      'bad_request',
      'stores',
      'stores-1',
    ]);
  });
});
