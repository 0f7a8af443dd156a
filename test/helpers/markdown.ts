import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Reading the repository's Markdown the way GitHub renders it, for the tests that keep the docs honest. */

export interface FencedBlock {
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** The info string: `yaml`, `yaml kubernetes`, `json`, `` (none). */
  readonly info: string;
  readonly text: string;
}

export interface Link {
  readonly line: number;
  readonly target: string;
}

/** README.md and every page under docs/, repository-relative, README first: the user documentation. */
export function docPages(root: string): string[] {
  return ['README.md', ...markdownUnder(root, 'docs')];
}

/** Every Markdown file the repository ships at its top level and under docs/. */
export function allMarkdown(root: string): string[] {
  const top = readdirSync(root)
    .filter((f) => f.endsWith('.md'))
    .sort();
  return [...top, ...markdownUnder(root, 'docs')];
}

function markdownUnder(root: string, dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: string) => {
    for (const name of readdirSync(abs).sort()) {
      const path = join(abs, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.md')) out.push(relative(root, path));
    }
  };
  walk(join(root, dir));
  return out;
}

/** Fenced code blocks (``` or ~~~, three or more), with the line each starts on. */
export function fencedBlocks(markdown: string): FencedBlock[] {
  const blocks: FencedBlock[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,}|~{3,})\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !lines[j]!.startsWith(fence)) body.push(lines[j++]!);
    blocks.push({ line: i + 1, info: open[2]!.trim(), text: body.join('\n') + '\n' });
    i = j;
  }
  return blocks;
}

/** The lines outside fenced blocks, each with its 1-based number. */
function prose(markdown: string): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  let fence: string | undefined;
  markdown.split('\n').forEach((text, i) => {
    const marker = /^(`{3,}|~{3,})/.exec(text)?.[1];
    if (fence === undefined && marker !== undefined) fence = marker;
    else if (fence !== undefined && marker !== undefined && text.startsWith(fence)) fence = undefined;
    else if (fence === undefined) out.push({ line: i + 1, text });
  });
  return out;
}

/** Inline links `[text](target)` outside code, as written (no images, no reference-style links). */
export function links(markdown: string): Link[] {
  const out: Link[] = [];
  for (const { line, text } of prose(markdown)) {
    const withoutCode = text.replace(/(`+)[^`]*?\1/g, '');
    for (const m of withoutCode.matchAll(/(!?)\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      if (m[1] === '') out.push({ line, target: m[2]! });
    }
  }
  return out;
}

/** The anchors GitHub gives the headings of a page (github-slugger: lower case, punctuation dropped, spaces to -, repeats numbered). */
export function headingAnchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const { text } of prose(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(text)?.[1];
    if (heading === undefined) continue;
    const base = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}
