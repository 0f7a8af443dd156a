import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { onCleanup } from './cleanup.js';

/**
 * A TCP server that answers every connection with `onConnection`: for upstreams that misbehave
 * in ways node:http will not (garbage, hop-by-hop headers of our choosing, a cut mid-body).
 */
export async function startRawUpstream(onConnection: (socket: Socket, request: Promise<string>) => void): Promise<{ url: string; port: number; connections: number }> {
  const sockets = new Set<Socket>();
  const state = { url: '', port: 0, connections: 0 };
  const server = createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const request = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (text.includes('\r\n\r\n')) resolve(text);
      });
    });
    onConnection(socket, request);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}`;
  onCleanup(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return state;
}

/** Sends raw bytes to a port and collects everything until the peer closes (or `untilMs`). */
export async function rawExchange(port: number, text: string, untilMs = 5_000): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(text);
  let out = '';
  socket.on('data', (c: Buffer) => (out += c.toString('latin1')));
  await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, untilMs))]);
  socket.destroy();
  return out;
}

/**
 * Writes raw bytes — optionally in timed pieces — on a new connection and collects everything
 * until the server closes it; rejects when it stays open past `timeoutMs`.
 */
export function sendRaw(port: number, pieces: readonly (string | Buffer | { waitMs: number })[], timeoutMs = 8_000): Promise<{ text: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('close', () => resolve({ text, ms: performance.now() - started }));
    socket.on('error', () => {}); // a reset after the answer is fine
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${timeoutMs}ms; got: ${text.slice(0, 300)}`));
    }, timeoutMs);
    socket.on('close', () => clearTimeout(timer));
    socket.on('connect', () => {
      void (async () => {
        for (const p of pieces) {
          if (typeof p === 'string' || Buffer.isBuffer(p)) socket.write(p);
          else await new Promise((r) => setTimeout(r, p.waitMs));
          if (socket.destroyed) return;
        }
      })();
    });
  });
}

/** The status code of the first response in raw response text. */
export const statusOf = (text: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
