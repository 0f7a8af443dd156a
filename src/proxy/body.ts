import { PassThrough, type Readable } from 'node:stream';
import type { Exchange } from '../core/exchange.js';

/**
 * Request bodies against slow senders (SPEC §3.1): small bodies are read whole before an upstream
 * connection is taken, and every body is watched for progress.
 */

/**
 * Reads `stream` to its end when it holds at most `maxBytes`: the whole body as one Buffer. A
 * longer body (a chunked one that turned out large) comes back as a stream that replays what was
 * read and then carries the rest. Rejects with the stream's error (a 413 from the size limit).
 */
export function readSmallBody(stream: Readable, maxBytes: number): Promise<Buffer | Readable> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const done = (settle: () => void) => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      settle();
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      bytes += chunk.length;
      if (bytes <= maxBytes) return;
      done(() => {
        stream.pause();
        const rest = new PassThrough();
        for (const c of chunks) rest.write(c);
        stream.on('error', (err) => rest.destroy(err));
        stream.pipe(rest);
        resolve(rest);
      });
    };
    const onEnd = () => done(() => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes)));
    const onError = (err: Error) => done(() => reject(err));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}

export interface BodyWatch {
  /** Watches until the body is complete: `onIdle(ex)` once the connection received nothing for `timeoutMs`. */
  watch(ex: Exchange, timeoutMs: number): void;
  unwatch(ex: Exchange): void;
}

/** How often bodies in progress are checked; a body timeout fires within this much of its time. */
const SWEEP_MS = 250;

/**
 * `limits.bodyTimeout`, as nginx's client_body_timeout: the longest a request body may go without
 * a byte arriving (not a bound on the whole upload, which would cut slow mobile uploads of large
 * bodies; `limits.requestTimeout` bounds that). Progress is read from the socket's byte count on
 * one shared timer, so a body costs no timer and no listener on its data path.
 */
export function createBodyWatch(onIdle: (ex: Exchange, timeoutMs: number) => void): BodyWatch {
  /** Each watched exchange and its timeout. */
  const watched = new Map<Exchange, number>();
  let timer: NodeJS.Timeout | undefined;

  const sweep = () => {
    const now = performance.now();
    for (const [ex, timeoutMs] of watched) {
      if (ex.req.complete) {
        watched.delete(ex);
        continue;
      }
      const read = ex.req.socket.bytesRead;
      if (read !== ex.bodySeenBytes) {
        ex.bodySeenBytes = read;
        ex.bodySeenAt = now;
      } else if (now - ex.bodySeenAt >= timeoutMs) {
        watched.delete(ex);
        onIdle(ex, timeoutMs);
      }
    }
    if (watched.size === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  return {
    watch(ex, timeoutMs) {
      if (ex.req.complete) return;
      ex.bodySeenBytes = ex.req.socket.bytesRead;
      ex.bodySeenAt = performance.now();
      watched.set(ex, timeoutMs);
      if (timer === undefined) {
        timer = setInterval(sweep, Math.min(SWEEP_MS, timeoutMs));
        timer.unref();
      }
    },
    unwatch(ex) {
      watched.delete(ex);
    },
  };
}
