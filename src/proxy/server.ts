import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { fingerprint } from '../config/fingerprint.js';
import type { ListenerConfig } from '../config/schema.js';
import { applyServerTls, loadServerTls, watchServerTls } from '../security/tls.js';
import { GatehouseError } from '../core/errors.js';
import type { Plan } from './plan.js';
import type { PipelineDeps, ProxyState } from './lifecycle.js';
import { createRequestHandler } from './pipeline.js';
import { problemResponseBytes } from '../core/problem.js';

interface Bound {
  readonly key: string;
  /** What listens on the address: the HTTP server itself, or for TLS the front that sniffs plain HTTP. */
  readonly front: NetServer;
  readonly server: Server;
  readonly https: boolean;
  /** The limits in force (`limits.handshakeTimeout` is read for every new connection). */
  limits: ListenerConfig['limits'];
  /** Fingerprint of the `tls` and `limits` last applied. */
  applied: string;
  stopWatching: (() => void) | undefined;
}

/**
 * The traffic listeners. A reload reconciles them with the new plan: unchanged ones keep their
 * socket (new limits and TLS settings are applied to it), new ones are bound before the plan is
 * swapped (a bind failure rejects the reload), and removed ones stop accepting and drain.
 */
export function createListeners(state: ProxyState, deps: PipelineDeps) {
  const bound = new Map<string, Bound>();

  async function open(cfg: ListenerConfig): Promise<Bound> {
    const handlers = createRequestHandler(state, cfg.name, deps);
    const options = {
      // Longer than the usual client pool idle time, so the client closes first (no reuse race).
      keepAliveTimeout: 65_000,
      noDelay: true,
      maxHeaderSize: cfg.limits.maxHeaderSize,
      headersTimeout: cfg.limits.headersTimeout,
      requestTimeout: cfg.limits.requestTimeout,
      // How often Node checks the two timeouts above (default 30 s would let them overrun by that).
      connectionsCheckingInterval: 1_000,
      // A request without Host gets gatehouse's own problem+json 400 (with x-request-id), not Node's bare one.
      requireHostHeader: false,
    };
    const server: Server =
      cfg.tls === undefined
        ? createServer(options, handlers.handleRequest)
        : createHttpsServer({ ...options, ...loadServerTls(cfg.tls).options, handshakeTimeout: cfg.limits.handshakeTimeout }, handlers.handleRequest);
    server.on('upgrade', handlers.handleUpgrade);
    server.on('checkContinue', handlers.handleContinue);
    const tlsFailure = cfg.tls === undefined ? undefined : createTlsFailureReport(cfg.name, deps);
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => refuseUnparsable(err, socket, tlsFailure));
    // A TLS listener is fronted by a plain TCP server that reads the first byte: a TLS handshake
    // goes on to the HTTPS server, plain HTTP gets nginx's plaintext 400 instead of an empty reply.
    // noDelay here too: the HTTPS server sets it only on connections it accepts itself, and with
    // Nagle on, a response written in two segments waited for the client's delayed ACK (p99 at one
    // connection 15 ms against 2 ms over plain HTTP).
    const front: NetServer = cfg.tls === undefined ? server : createNetServer({ pauseOnConnect: true, noDelay: true }, (socket) => sniff(socket, b));
    front.listen(cfg.address.port, cfg.address.host);
    try {
      await once(front, 'listening'); // rejects with the 'error' event
    } catch (err) {
      throw new Error(`cannot listen on ${cfg.address.text} for listener '${cfg.name}': ${(err as Error).message}`);
    }
    const b: Bound = { key: keyOf(cfg), front, server, https: cfg.tls !== undefined, limits: cfg.limits, applied: '', stopWatching: undefined };
    apply(b, cfg, deps.logger);
    return b;
  }

  const close = (b: Bound) => {
    b.stopWatching?.();
    b.front.close();
    b.server.closeIdleConnections();
  };

  return {
    /** Binds what `plan` adds or changes; returns a commit that closes what it removes. */
    async prepare(plan: Plan): Promise<{ commit(): void; abort(): void }> {
      const opened = new Map<string, Bound>();
      try {
        for (const l of plan.config.listeners) {
          const current = bound.get(l.name);
          if (current !== undefined && current.key === keyOf(l) && current.https !== (l.tls !== undefined)) {
            throw new Error(`listener '${l.name}' cannot switch between http and https on the same address without a restart`);
          }
          if (current === undefined || current.key !== keyOf(l)) opened.set(l.name, await open(l));
        }
      } catch (err) {
        for (const b of opened.values()) close(b);
        throw err;
      }
      return {
        commit() {
          for (const [name, b] of bound) {
            if (!plan.listeners.has(name) || opened.has(name)) {
              close(b);
              bound.delete(name);
            }
          }
          for (const [name, b] of opened) bound.set(name, b);
          for (const l of plan.config.listeners) {
            const b = bound.get(l.name);
            if (b !== undefined && !opened.has(l.name)) apply(b, l, deps.logger);
          }
        },
        abort() {
          for (const b of opened.values()) close(b);
        },
      };
    },

    address(name: string): AddressInfo | undefined {
      return bound.get(name)?.front.address() as AddressInfo | undefined;
    },

    /** Stop accepting connections; idle keep-alive connections close now, busy ones after their answer. */
    stopAccepting(): void {
      for (const b of bound.values()) close(b);
    },

    closeAll(): void {
      for (const b of bound.values()) b.server.closeAllConnections();
    },
  };
}

/** Installs a listener's limits and TLS settings on its server (at bind, and on reloads that change them). */
function apply(b: Bound, cfg: ListenerConfig, logger: Logger): void {
  const print = fingerprint([cfg.tls, cfg.limits]);
  if (print === b.applied) return;
  const { server } = b;
  server.headersTimeout = cfg.limits.headersTimeout;
  server.requestTimeout = cfg.limits.requestTimeout;
  b.front.maxConnections = cfg.limits.maxConnections;
  if (b.applied !== '' && b.limits.handshakeTimeout !== cfg.limits.handshakeTimeout) {
    logger.warn({ listener: cfg.name }, 'a change to limits.handshakeTimeout applies to handshakes in full from the next restart');
  }
  b.limits = cfg.limits;
  // Node would silently drop the fields past its count (Host among them, if it came last):
  // it keeps them all, maxHeaderSize bounds their bytes, and the pipeline answers 431 past maxHeaders.
  server.maxHeadersCount = 0;
  if (b.applied !== '' && (server as Server & { maxHeaderSize?: number }).maxHeaderSize !== cfg.limits.maxHeaderSize) {
    logger.warn({ listener: cfg.name }, 'a change to limits.maxHeaderSize takes effect at the next restart');
  }
  if (cfg.tls !== undefined) {
    const tlsServer = server as unknown as TlsServer;
    if (b.applied !== '') {
      try {
        applyServerTls(tlsServer, cfg.tls);
      } catch (err) {
        logger.error({ listener: cfg.name, err: (err as Error).message }, 'cannot apply the new TLS settings; the previous ones stay in use');
      }
    }
    b.stopWatching?.();
    b.stopWatching = watchServerTls(tlsServer, cfg.tls, cfg.name, logger);
  }
  b.applied = print;
}

/**
 * A new connection to a TLS listener: a TLS record starts with 0x16 (handshake). Anything else
 * is answered as nginx does ("plain HTTP request sent to HTTPS port"), in plain text. A
 * connection that sends nothing within `limits.handshakeTimeout` is closed.
 */
function sniff(socket: Socket, b: Bound): void {
  socket.setTimeout(b.limits.handshakeTimeout, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.once('data', (chunk: Buffer) => {
    socket.pause();
    socket.setTimeout(0);
    socket.unshift(chunk); // node:tls reads what is buffered on the socket before the handshake
    if (chunk[0] === 0x16) {
      b.server.emit('connection', socket);
      return;
    }
    socket.end(problemResponseBytes(new GatehouseError('bad_request', 'the plain HTTP request was sent to an HTTPS port')));
  });
  socket.resume();
}

/**
 * Requests Node's HTTP parser refuses before gatehouse sees them — ambiguous framing (both
 * Content-Length and Transfer-Encoding, duplicate or invalid Content-Length, unknown
 * Transfer-Encoding), oversized headers, headers or body too slow — get problem+json too, and
 * the connection closes. Nothing is forwarded. A TLS handshake that fails or does not finish in
 * time (node:https reports those here too) closes the socket at once: nothing can be written
 * on it, and ending it gracefully would leave it open.
 */
function refuseUnparsable(err: NodeJS.ErrnoException, socket: Duplex, tlsFailure: TlsFailureReport | undefined): void {
  if (tlsFailure !== undefined && isHandshakeFailure(err, socket)) {
    tlsFailure(err);
    socket.destroy();
    return;
  }
  if (!socket.writable || err.code === 'ECONNRESET' || (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent) {
    socket.destroy();
    return;
  }
  const refusal =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new GatehouseError('headers_too_large', 'the request headers are larger than this listener accepts (limits.maxHeaderSize)')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new GatehouseError('request_timeout', 'the request was not received in time (limits.headersTimeout / limits.requestTimeout)')
        : new GatehouseError('bad_request', `the request is not valid HTTP/1.1 (${err.code ?? 'parse error'})`);
  socket.end(problemResponseBytes(refusal));
}

export type Listeners = ReturnType<typeof createListeners>;

const keyOf = (l: ListenerConfig) => `${l.address.host}:${l.address.port}`;

/** An error of the TLS layer, before the connection carried any HTTP. */
function isHandshakeFailure(err: NodeJS.ErrnoException & { library?: string }, socket: Duplex): boolean {
  const code = err.code ?? '';
  return code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || err.library !== undefined || (socket as TLSSocket & { _secureEstablished?: boolean })._secureEstablished !== true;
}

type TlsFailureReport = (err: NodeJS.ErrnoException) => void;

/** How often a failing reason is logged at most; the metric counts every failure. */
const TLS_LOG_EVERY_MS = 10_000;

/**
 * Refused handshakes (an mTLS client without a valid certificate, a handshake timeout, no shared
 * cipher) are counted by reason — `gatehouse_tls_handshake_failures_total{listener,reason}` — and
 * logged, at most once per reason every 10 s with how many were not logged, so a flood of bad
 * handshakes cannot flood the log.
 */
function createTlsFailureReport(listener: string, deps: PipelineDeps): TlsFailureReport {
  const lastLogged = new Map<string, { at: number; suppressed: number }>();
  return (err) => {
    const reason = handshakeReason(err);
    deps.metrics.tlsHandshakeFailures({ listener, reason }).value++;
    const now = performance.now();
    const last = lastLogged.get(reason);
    if (last !== undefined && now - last.at < TLS_LOG_EVERY_MS) {
      last.suppressed++;
      return;
    }
    deps.logger.warn({ listener, reason, suppressed: last?.suppressed ?? 0 }, 'TLS handshake refused');
    lastLogged.set(reason, { at: now, suppressed: 0 });
  };
}

/** `ERR_SSL_TLSV1_ALERT_UNKNOWN_CA` -> `tlsv1_alert_unknown_ca`: a short, bounded label. */
function handshakeReason(err: NodeJS.ErrnoException & { reason?: string }): string {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake_timeout';
  if (code === 'ECONNRESET') return 'reset';
  if (code.startsWith('ERR_SSL_')) return code.slice('ERR_SSL_'.length).toLowerCase();
  return typeof err.reason === 'string' ? err.reason.replace(/\W+/g, '_').toLowerCase().slice(0, 64) : 'handshake_failed';
}
