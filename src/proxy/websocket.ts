import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Exchange } from './exchange.js';
import { lowerName, type RequestFacts } from './headers.js';
import type { RoutePlan } from './plan.js';

/**
 * WebSocket upgrades on routes with `websocket: true`, relayed by http-proxy once the route's
 * stages (jwt, quota) have let the request through. Header hygiene matches plain requests.
 */
export function createWebSocketProxy() {
  const proxy = httpProxy.createProxyServer({ ws: true, xfwd: false, prependPath: false, ignorePath: false });
  // Errors are handled per call; this keeps an unexpected one from becoming an uncaught 'error'.
  proxy.on('error', () => {});

  return {
    forward(ex: Exchange, route: RoutePlan, facts: RequestFacts, socket: Duplex, head: Buffer, onFailure: (err: Error) => void): void {
      const ep = route.upstream.pick();
      if (ep === undefined) {
        onFailure(new Error(`no endpoint of upstream '${route.upstream.name}' is available`));
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
      socket.once('close', () => {
        ep.inFlight--;
        route.upstream.inFlight--;
      });
      proxy.ws(req, socket, head, {
        target: `${ep.scheme}://${ep.authority}`,
        headers,
        secure: true,
        // https:// upstreams: the upstream's TLS settings (CA, client certificate, serverName)
        ...(ep.wsAgent === undefined ? {} : { agent: ep.wsAgent }),
      }, (err) => onFailure(err));
    },
    close: () => proxy.close(),
  };
}

export type WebSocketProxy = ReturnType<typeof createWebSocketProxy>;
