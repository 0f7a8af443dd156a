import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenerConfig } from '../config/schema.js';
import type { Plan } from './plan.js';
import { createRequestHandler, type PipelineDeps, type ProxyState } from './pipeline.js';

interface Bound {
  readonly key: string;
  readonly server: Server;
}

/**
 * The traffic listeners. A reload reconciles them with the new plan: unchanged ones keep their
 * socket, new ones are bound before the plan is swapped (a bind failure rejects the reload), and
 * removed ones stop accepting and drain.
 */
export function createListeners(state: ProxyState, deps: PipelineDeps) {
  const bound = new Map<string, Bound>();

  async function open(cfg: ListenerConfig): Promise<Bound> {
    const handlers = createRequestHandler(state, cfg.name, deps);
    const server = createServer(
      {
        // Longer than the usual client pool idle time, so the client closes first (no reuse race).
        keepAliveTimeout: 65_000,
        noDelay: true,
      },
      handlers.handleRequest,
    );
    server.on('upgrade', handlers.handleUpgrade);
    server.listen(cfg.address.port, cfg.address.host);
    try {
      await once(server, 'listening'); // rejects with the 'error' event
    } catch (err) {
      throw new Error(`cannot listen on ${cfg.address.text} for listener '${cfg.name}': ${(err as Error).message}`);
    }
    return { key: keyOf(cfg), server };
  }

  return {
    /** Binds what `plan` adds or changes; returns a commit that closes what it removes. */
    async prepare(plan: Plan): Promise<{ commit(): void; abort(): void }> {
      const opened = new Map<string, Bound>();
      try {
        for (const l of plan.config.listeners) {
          const current = bound.get(l.name);
          if (current === undefined || current.key !== keyOf(l)) opened.set(l.name, await open(l));
        }
      } catch (err) {
        for (const b of opened.values()) b.server.close();
        throw err;
      }
      return {
        commit() {
          for (const [name, b] of bound) {
            if (!plan.listeners.has(name) || opened.has(name)) {
              b.server.close();
              b.server.closeIdleConnections();
              bound.delete(name);
            }
          }
          for (const [name, b] of opened) bound.set(name, b);
        },
        abort() {
          for (const b of opened.values()) b.server.close();
        },
      };
    },

    address(name: string): AddressInfo | undefined {
      return bound.get(name)?.server.address() as AddressInfo | undefined;
    },

    /** Stop accepting connections; idle keep-alive connections close now, busy ones after their answer. */
    stopAccepting(): void {
      for (const b of bound.values()) {
        b.server.close();
        b.server.closeIdleConnections();
      }
    },

    closeAll(): void {
      for (const b of bound.values()) b.server.closeAllConnections();
    },
  };
}

export type Listeners = ReturnType<typeof createListeners>;

const keyOf = (l: ListenerConfig) => `${l.address.host}:${l.address.port}`;
