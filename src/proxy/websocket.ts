import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Exchange } from '../core/exchange.js';
import { lowerName, type RequestFacts } from '../core/headers.js';
import type { RoutePlan } from './plan.js';

/**
 * WebSocket upgrades on routes with `websocket: true`, relayed by http-proxy once the route's
 * stages (jwt, quota) have let the request through. Header hygiene matches plain requests.
 */
export function createWebSocketProxy() {
  const proxy = httpProxy.createProxyServer({ ws: true, xfwd: false, prependPath: false, ignorePath: false });
  // Errors are handled per call; this keeps an unexpected one from becoming an uncaught 'error'.
  proxy.on('error', () => {});
  // The upstream request of each upgrade, handed to the call that started it (keyed by the client's request).
  const started = new WeakMap<IncomingMessage, (proxyReq: ClientRequest) => void>();
  proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => started.get(req)?.(proxyReq));

  return {
    /** `onFailure(err, timedOut)`: the upgrade failed, or the upstream did not answer it within the route timeout. */
    forward(ex: Exchange, route: RoutePlan, facts: RequestFacts, socket: Duplex, head: Buffer, onFailure: (err: Error, timedOut: boolean) => void): void {
      const ep = route.upstream.pick();
      if (ep === undefined) {
        onFailure(new Error(`no endpoint of upstream '${route.upstream.name}' is available`), false);
        return;
      }
      const req: IncomingMessage = ex.req;
      for (const name of Object.keys(req.headers)) {
        const lower = lowerName(name);
        if (lower.startsWith('x-forwarded-') || lower === 'x-request-id' || route.requestHeaders.strip.has(lower)) delete req.headers[name];
      }
      const headers: Record<string, string> = {
        host: route.host === undefined ? ep.authority : route.host === 'preserve' ? ex.hostHeader || ep.authority : route.host,
        'x-forwarded-for': ex.forwardedFor === undefined ? (req.socket.remoteAddress ?? '') : `${ex.forwardedFor}, ${req.socket.remoteAddress ?? ''}`,
        'x-forwarded-proto': ex.forwardedProto ?? ((req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http'),
        'x-request-id': ex.requestId,
      };
      const forwardedHost = ex.forwardedHost ?? facts.host;
      if (forwardedHost !== undefined) headers['x-forwarded-host'] = forwardedHost;
      const set = route.requestHeaders.set;
      for (let i = 0; i < set.length; i += 2) headers[set[i]!] = set[i + 1]!;
      const extra = ex.upstreamHeaders ?? [];
      for (let i = 0; i < extra.length; i += 2) headers[extra[i]!] = extra[i + 1]!;
      req.url = ep.basePath + route.rewrite(ex.path) + ex.query;
      ex.attempts++;
      ep.inFlight++;
      route.upstream.inFlight++;
      // The route timeout bounds the handshake (until the upstream answers the upgrade), not the
      // connection that follows: a WebSocket may stay open for hours.
      let upstreamReq: ClientRequest | undefined;
      let failed = false;
      const fail = (err: Error, timedOut: boolean) => {
        if (failed) return;
        failed = true;
        clearTimeout(timer);
        onFailure(err, timedOut);
      };
      const timer = setTimeout(() => {
        fail(new Error(`the upstream did not answer the WebSocket upgrade within the route timeout of ${route.config.timeout}ms`), true);
        upstreamReq?.destroy();
      }, route.config.timeout);
      started.set(req, (proxyReq) => {
        upstreamReq = proxyReq;
        const answered = () => clearTimeout(timer);
        proxyReq.once('upgrade', answered).once('response', answered);
      });
      socket.once('close', () => {
        clearTimeout(timer);
        ep.inFlight--;
        route.upstream.inFlight--;
      });
      proxy.ws(req, socket, head, {
        target: `${ep.scheme}://${ep.authority}`,
        headers,
        secure: true,
        // https:// upstreams: the upstream's TLS settings (CA, client certificate, serverName)
        ...(ep.wsAgent === undefined ? {} : { agent: ep.wsAgent }),
      }, (err) => fail(err, false));
    },
    close: () => proxy.close(),
  };
}

export type WebSocketProxy = ReturnType<typeof createWebSocketProxy>;
