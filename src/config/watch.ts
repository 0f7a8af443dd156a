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

export interface FileWatch {
  /** Watches these files from these versions on (taken before each was read), and no others. */
  set(files: ReadonlyMap<string, string>): void;
  stop(): void;
}

/**
 * Calls `onChange` once a watched file — the config file, and the files its `${file:}`
 * references read (certificates, keys, secrets) — has changed and then stayed still for
 * `settleMs`: edited in place, or replaced by rename or a symlink swap (Kubernetes ConfigMaps and
 * Secrets). Polls with stat, which sees all of these alike, starting from the version each file
 * had before it was read, so a change made while gatehouse was reading is not missed.
 */
export function watchFiles(files: ReadonlyMap<string, string>, intervalMs: number, onChange: () => void, settleMs = 150): FileWatch {
  let seen = new Map(files);
  let settle: NodeJS.Timeout | undefined;
  let polling = false;
  const poll = async () => {
    let changed = false;
    for (const [file, version] of seen) {
      const now = await new Promise<string>((resolve) => stat(file, (err, s) => resolve(err ? '' : versionOf(s))));
      if (now === version) continue;
      seen.set(file, now);
      changed = true;
    }
    if (!changed) return;
    clearTimeout(settle);
    settle = setTimeout(onChange, settleMs);
    settle.unref();
  };
  const timer = setInterval(() => {
    if (polling) return;
    polling = true;
    void poll().finally(() => (polling = false));
  }, intervalMs);
  timer.unref();
  return {
    set(next) {
      seen = new Map(next);
    },
    stop() {
      clearInterval(timer);
      clearTimeout(settle);
    },
  };
}
