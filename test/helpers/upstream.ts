import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as HttpsOptions } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { onCleanup } from './cleanup.js';

export interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly body: Buffer;
}

/** One scripted answer; `handle` gets the request with its body already read. */
export type Reply = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void | Promise<void>;

export const reply =
  (status: number, body: string | Buffer = '', headers: Record<string, string> = {}): Reply =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain', ...headers });
    res.end(body);
  };

/** Echoes what arrived as JSON: method, url, headers, body length. */
export const echo: Reply = (req, res, body) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bodyBytes: body.length, body: body.toString('utf8').slice(0, 1000) }));
};

/** Destroys the socket without answering: a reset before headers. */
export const reset: Reply = (req) => {
  req.socket.destroy();
};

/** Never answers. */
export const stall: Reply = () => new Promise<void>(() => {});

export const delay =
  (ms: number, then: Reply): Reply =>
  async (req, res, body) => {
    await new Promise((r) => setTimeout(r, ms));
    await then(req, res, body);
  };

export interface Upstream {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  readonly received: Received[];
  /** Open sockets, to count connections. */
  readonly sockets: Set<Socket>;
  /** Requests whose connection closed before their answer was complete (cancelled by the proxy). */
  readonly closedEarly: string[];
  close(): Promise<void>;
}

/**
 * A real HTTP server on 127.0.0.1:0. Replies are taken in order from `script` (the last one
 * repeats); a function instead of a list handles every request. Bodies are read before replying
 * unless `streaming` is set (then the handler gets an empty body and may read `req` itself).
 */
export async function startUpstream(script: Reply | Reply[] = echo, options: { streaming?: boolean; tls?: HttpsOptions } = {}): Promise<Upstream> {
  const received: Received[] = [];
  const sockets = new Set<Socket>();
  let i = 0;
  const next = (): Reply => {
    if (typeof script === 'function') return script;
    const r = script[Math.min(i, script.length - 1)]!;
    i++;
    return r;
  };
  const closedEarly: string[] = [];
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    res.on('close', () => {
      if (!res.writableFinished) closedEarly.push(req.url!);
    });
    const handle = next();
    if (options.streaming) {
      received.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0) });
      void handle(req, res, Buffer.alloc(0));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
      void handle(req, res, body);
    });
  };
  const server: Server = options.tls === undefined ? createServer(onRequest) : createHttpsServer(options.tls, onRequest);
  server.on(options.tls === undefined ? 'connection' : 'secureConnection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  onCleanup(close);
  return { url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`, port, server, received, sockets, closedEarly, close };
}

/**
 * A port that refuses connections. Taken below the kernel's ephemeral range (32768+), where no
 * test server (they all listen on port 0) can be handed it while the test runs, and checked to
 * refuse. A port bound and closed again could be given to another test's server a moment later.
 */
export async function closedPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const refused = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
    });
    if (refused) return port;
  }
}
