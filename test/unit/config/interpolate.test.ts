import { describe, expect, it } from 'vitest';
import { interpolate } from '../../../src/config/interpolate.js';

describe('${env:} and ${file:} interpolation', () => {
  it('replaces references anywhere in a string and marks those values as secrets', () => {
    const out = interpolate(
      { a: 'Bearer ${env:KEY}', b: ['x', 'y-${env:KEY}-${env:OTHER}'], c: 1, d: 'plain' },
      { env: { KEY: 'k', OTHER: 'o' }, baseDir: '/' },
    );
    expect(out.value).toEqual({ a: 'Bearer k', b: ['x', 'y-k-o'], c: 1, d: 'plain' });
    expect(out.secretPaths).toEqual([['a'], ['b', 1]]);
    expect(out.problems).toEqual([]);
  });

  it('does not expand references inside replaced values', () => {
    const out = interpolate({ a: '${env:A}' }, { env: { A: '${env:B}', B: 'nope' }, baseDir: '/' });
    expect(out.value).toEqual({ a: '${env:B}' });
  });

  it('drops exactly one trailing newline of a file, CRLF included, and resolves relative paths', () => {
    const files: Record<string, string> = { '/cfg/a': 'one\n\n', '/cfg/b': 'two\r\n', '/abs/c': 'three' };
    const readFile = (p: string) => {
      const text = files[p];
      if (text === undefined) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      return text;
    };
    const out = interpolate({ a: '${file:a}', b: '${file:./b}', c: '${file:/abs/c}' }, { env: {}, baseDir: '/cfg', readFile });
    expect(out.value).toEqual({ a: 'one\n', b: 'two', c: 'three' });
  });

  it('reports each missing variable or file at its path', () => {
    const out = interpolate({ x: { y: ['${env:NOPE}'] }, z: '${file:/nope}' }, { env: {}, baseDir: '/', readFile: () => {
      throw Object.assign(new Error('missing'), { code: 'ENOENT' });
    } });
    expect(out.problems).toEqual([
      { path: ['x', 'y', 0], message: 'environment variable NOPE is not set' },
      { path: ['z'], message: 'cannot read file /nope (ENOENT)' },
    ]);
  });
});
