/**
 * Time as a dependency: policies ask a Clock, never Date.now(), so tests drive them with plain
 * numbers. `now()` is wall-clock ms (for HTTP dates); `monotonic()` is for durations.
 */
export interface Clock {
  now(): number;
  monotonic(): number;
  /** Resolves after ms, or rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  // eslint-disable-next-line no-restricted-properties -- the one place wall-clock time is read
  now: () => Date.now(),
  monotonic: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason as Error);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};
