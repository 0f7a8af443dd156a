import { Readable } from 'node:stream';

/**
 * Reads a request body into one Buffer so a retry can send it again (Traefik's retry middleware
 * does the same). A body larger than `maxBytes` is not kept: what was read so far is put back in
 * front of the rest, and the caller sends it once. Rejects with the signal's reason when the
 * exchange is cancelled (client gone, route deadline) while the body is still arriving.
 */
export function readReplayableBody(src: Readable, maxBytes: number, signal: AbortSignal): Promise<Buffer | Readable> {
  return new Promise<Buffer | Readable>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        src.pause();
        resolve(Readable.from(prepend(chunks, src), { objectMode: false }));
      }
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onAbort = () => {
      cleanup();
      reject(signal.reason as Error);
    };
    src.on('data', onData);
    src.on('end', onEnd);
    src.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function* prepend(head: readonly Buffer[], rest: Readable): AsyncGenerator<Buffer> {
  yield* head;
  for await (const chunk of rest) yield chunk as Buffer;
}
