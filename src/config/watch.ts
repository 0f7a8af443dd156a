import { stat, statSync, type Stats } from 'node:fs';

/** What identifies one version of a file: a write changes mtime/size, a rename or symlink swap the inode. */
const versionOf = (s: Stats) => `${s.ino}:${s.mtimeMs}:${s.size}`;

/** The file's current version, '' when it cannot be read. */
export function fileVersion(file: string): string {
  try {
    return versionOf(statSync(file));
  } catch {
    return '';
  }
}

/**
 * Calls `onChange` once the config file has changed and then stayed still for `settleMs`: edited
 * in place, or replaced by rename or a symlink swap (Kubernetes ConfigMaps). Polls with stat, which
 * sees all of these alike, starting from `since` (taken before the config was read), so a change
 * made while gatehouse was starting is not missed.
 */
export function watchConfigFile(file: string, since: string, intervalMs: number, onChange: () => void, settleMs = 150): () => void {
  let seen = since;
  let settle: NodeJS.Timeout | undefined;
  let polling = false;
  const timer = setInterval(() => {
    if (polling) return;
    polling = true;
    stat(file, (err, s) => {
      polling = false;
      const version = err ? '' : versionOf(s);
      if (version === seen) return;
      seen = version;
      clearTimeout(settle);
      settle = setTimeout(onChange, settleMs);
      settle.unref();
    });
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    clearTimeout(settle);
  };
}
