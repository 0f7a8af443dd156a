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
