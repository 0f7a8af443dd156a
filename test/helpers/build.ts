import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * vitest globalSetup: tests that spawn `node dist/main.js` need a build that matches src/.
 * `npm test` builds first; a targeted `npx vitest run` rebuilds here only when src/ is newer.
 */
export default function setup(): void {
  const root = join(import.meta.dirname, '..', '..');
  const built = mtime(join(root, 'dist', 'main.js'));
  const newest = Math.max(mtime(join(root, 'package.json')), newestIn(join(root, 'src')));
  if (built >= newest) return;
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function newestIn(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestIn(path) : mtime(path));
  }
  return newest;
}
