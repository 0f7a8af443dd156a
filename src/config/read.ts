import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';

/** SPEC §3.1: the config file itself. */
export const MAX_CONFIG_BYTES = 10 * 1024 * 1024;
/** SPEC §3.1: a `${file:}` reference, a certificate, key or JWKS file the config names. */
export const MAX_REFERENCED_BYTES = 1024 * 1024;

/** A file that cannot be used as config input; `code` is errno's (`ENOENT`) or gatehouse's own. */
export class FileReadError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'FileReadError';
  }
}

/**
 * Reads a regular file of at most `maxBytes`, as UTF-8. Anything else is refused before a byte
 * is read: a FIFO (opened non-blocking, so a FIFO without a writer cannot hang the caller), a
 * device such as /dev/zero, a directory, a socket. The size is checked before reading and again
 * while reading, since a file can grow in between (and /proc files say 0).
 */
export function readBoundedFile(path: string, maxBytes: number): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new FileReadError(code, code);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new FileReadError('ENOTREGULAR', `not a regular file: ${kindOf(stats)}`);
    if (stats.size > maxBytes) throw new FileReadError('ETOOBIG', `larger than ${formatBytes(maxBytes)}: ${formatBytes(stats.size)}`);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, maxBytes + 1 - total));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > maxBytes) throw new FileReadError('ETOOBIG', `larger than ${formatBytes(maxBytes)}`);
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } catch (err) {
    if (err instanceof FileReadError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new FileReadError(code, code);
  } finally {
    closeSync(fd);
  }
}

/** Why a file could not be read, for a config problem: errno's code or what was wrong with it. */
export function whyUnreadable(err: unknown): string {
  return err instanceof FileReadError ? err.message : ((err as NodeJS.ErrnoException).code ?? 'unreadable');
}

function kindOf(s: Stats): string {
  if (s.isFIFO()) return 'a FIFO';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isDirectory()) return 'a directory';
  if (s.isSocket()) return 'a socket';
  return 'not a file';
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${Math.round((n / (1024 * 1024)) * 10) / 10} MB`;
  if (n >= 1024) return `${Math.round((n / 1024) * 10) / 10} KB`;
  return `${n} bytes`;
}
