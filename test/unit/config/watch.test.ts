import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import '../../helpers/cleanup.js';
import { onCleanup } from '../../helpers/cleanup.js';
import { eventually } from '../../helpers/http.js';
import { fileVersion, watchFiles } from '../../../src/config/watch.js';

const watchOne = (file: string, since: string, onChange: () => void, settleMs: number) => {
  const w = watchFiles(new Map([[file, since]]), 20, onChange, settleMs);
  return () => w.stop();
};

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'gh-watch-'));
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(file, 'version: 1\n');
  return { dir, file };
}

describe('config file watching', () => {
  it('sees a change made after the version was taken but before watching started', async () => {
    const { file } = setup();
    const since = fileVersion(file);
    writeFileSync(file, 'version: 1 # changed while starting\n');
    let changes = 0;
    onCleanup(watchOne(file, since, () => changes++, 10));
    await eventually(() => changes === 1, 2_000);
  });

  it('sees an in-place write and a replacement by rename, once each after the file settles', async () => {
    const { dir, file } = setup();
    let changes = 0;
    onCleanup(watchOne(file, fileVersion(file), () => changes++, 60));
    writeFileSync(file, 'version: 1\n# a\n');
    await eventually(() => changes === 1, 2_000);
    writeFileSync(join(dir, 'next'), 'version: 1\n# b\n');
    renameSync(join(dir, 'next'), file);
    await eventually(() => changes === 2, 2_000);
  });

  it('reports a deleted file as a change, and its return as another', async () => {
    const { file } = setup();
    let changes = 0;
    onCleanup(watchOne(file, fileVersion(file), () => changes++, 10));
    rmSync(file);
    await eventually(() => changes === 1, 2_000);
    writeFileSync(file, 'version: 1\n');
    await eventually(() => changes === 2, 2_000);
    expect(fileVersion(join(file, 'missing'))).toBe('');
  });

  it('watches every file it is given, and only those once the set changes', async () => {
    const { dir, file } = setup();
    const cert = join(dir, 'server.crt');
    writeFileSync(cert, 'one');
    let changes = 0;
    const w = watchFiles(new Map([[file, fileVersion(file)], [cert, fileVersion(cert)]]), 20, () => changes++, 10);
    onCleanup(() => w.stop());
    writeFileSync(cert, 'two, rotated');
    await eventually(() => changes === 1, 2_000);
    w.set(new Map([[file, fileVersion(file)]]));
    writeFileSync(cert, 'three, no longer watched');
    await new Promise((r) => setTimeout(r, 150));
    expect(changes).toBe(1);
  });
});
