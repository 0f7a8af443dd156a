import { afterEach } from 'vitest';

type Closer = () => unknown;
const closers: Closer[] = [];

/** Registers something to close after the current test, last registered closed first. */
export function onCleanup(close: Closer): void {
  closers.push(close);
}

afterEach(async () => {
  while (closers.length > 0) {
    const close = closers.pop()!;
    try {
      await close();
    } catch {
      // already closed
    }
  }
});
