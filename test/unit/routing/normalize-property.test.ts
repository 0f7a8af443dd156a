import { describe, expect, it } from 'vitest';
import { normalizePath } from '../../../src/routing/normalize.js';
import { randomPath, seeded } from '../../helpers/paths.js';

const UNRESERVED = /%(4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)/gi;

describe('normalizePath, as a property', () => {
  it('gives a path a WHATWG parser reads back unchanged, and reads the raw path as that parser does', () => {
    const seed = 20261206;
    const rand = seeded(seed);
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const raw = randomPath(rand);
      const n = normalizePath(raw);
      if (n === undefined) continue;
      accepted++;
      // what gatehouse forwards is stable under a WHATWG parse: the upstream reads the path routing saw
      expect(new URL(n, 'http://h').pathname, `seed ${seed}, ${JSON.stringify(raw)}`).toBe(n);
      // and it is the raw target's own WHATWG reading, up to decoding unreserved characters (a
      // target starting with `//` is no path to such a parser: it reads a host there)
      if (raw.startsWith('//')) continue;
      const whatwg = new URL(raw, 'http://h').pathname.replace(UNRESERVED, (e) => String.fromCharCode(parseInt(e.slice(1), 16)));
      const read = whatwg.replace(/%[0-9a-f]{2}/g, (e) => e.toUpperCase()).replace(/^\/+/, '/');
      expect(read, `seed ${seed}, ${JSON.stringify(raw)}`).toBe(n);
    }
    expect(accepted).toBeGreaterThan(2_000); // the generator does reach accepted paths
  });
});
