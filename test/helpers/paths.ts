/** Generated request paths for property tests of path handling. */

/** A small seeded generator (mulberry32), so a failure names a seed that reproduces it. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pieces that make paths interesting to a router: separators, dots in every spelling, escapes. */
export const PIECES = ['/', '/', '/', 'a', 'api', 'A', '.', '..', '%2e', '%2E', '.%2e', '%2f', '%2F', '%5c', '%5C', '\\', '#', ';', '%61', '%41', '%7e', '~', '%', '%z', '%00', '%0a', '%0D', '%20', '"', '{', '}', '<', '`', '^', '|', '[', ']', '@', ':', '!', '$', "'", '*', '+', ',', '=', '&', '-', '_'];

export function randomPath(rand: () => number): string {
  let p = '/';
  const n = 1 + Math.floor(rand() * 8);
  for (let i = 0; i < n; i++) p += PIECES[Math.floor(rand() * PIECES.length)];
  return p;
}
