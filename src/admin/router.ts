import type { AdminAnswer, AdminRequest, AdminRoute } from '../core/admin.js';

/** A compiled route table: `route(method, path)` finds the handler and the path's parameters. */
export interface AdminRouter {
  /** The answer for a request, or undefined when no route has that path (404). */
  route(method: string, path: string, request: Omit<AdminRequest, 'params' | 'method'>): Promise<AdminAnswer> | undefined;
}

interface Compiled {
  readonly segments: readonly string[];
  readonly byMethod: Map<string, AdminRoute>;
}

/**
 * Matches a path segment by segment (`:name` takes any one segment). Paths are compared before
 * methods: a known path with another method is 405 with `allow`, as HTTP asks, not 404.
 */
export function createAdminRouter(routes: readonly AdminRoute[]): AdminRouter {
  const table: Compiled[] = [];
  for (const r of routes) {
    const segments = r.path.split('/').slice(1);
    let entry = table.find((c) => c.segments.join('/') === segments.join('/'));
    if (entry === undefined) {
      entry = { segments, byMethod: new Map() };
      table.push(entry);
    }
    if (entry.byMethod.has(r.method)) throw new Error(`admin route ${r.method} ${r.path} is defined twice`);
    entry.byMethod.set(r.method, r);
  }

  return {
    route(method, path, request) {
      const parts = path.split('/').slice(1);
      for (const entry of table) {
        const params = match(entry.segments, parts);
        if (params === undefined) continue;
        const route = entry.byMethod.get(method);
        if (route === undefined) {
          return Promise.resolve({ status: 405, body: { error: `${method} is not allowed here`, allow: [...entry.byMethod.keys()] } });
        }
        return Promise.resolve(route.handle({ ...request, method, params }));
      }
      return undefined;
    },
  };
}

function match(segments: readonly string[], parts: readonly string[]): Record<string, string> | undefined {
  if (segments.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const want = segments[i]!;
    const got = parts[i]!;
    if (want.startsWith(':')) {
      if (got === '') return undefined;
      try {
        params[want.slice(1)] = decodeURIComponent(got);
      } catch {
        return undefined;
      }
    } else if (want !== got) {
      return undefined;
    }
  }
  return params;
}
