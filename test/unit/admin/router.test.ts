import { describe, expect, it } from 'vitest';
import { createAdminRouter } from '../../../src/admin/router.js';
import { answer, type AdminRoute } from '../../../src/core/admin.js';

const routes: AdminRoute[] = [
  { method: 'GET', path: '/admin/outbox', handle: ({ query }) => answer(200, { status: query.get('status') }) },
  { method: 'GET', path: '/admin/outbox/:id', handle: ({ params }) => answer(200, { id: params.id }) },
  { method: 'DELETE', path: '/admin/outbox/:id', handle: () => answer(204) },
  { method: 'POST', path: '/admin/outbox/:id/replay', handle: ({ params, body }) => answer(202, { id: params.id, body }) },
];
const ask = (method: string, path: string, query = '', body?: unknown) => createAdminRouter(routes).route(method, path, { query: new URLSearchParams(query), body });

describe('admin router', () => {
  it('finds a route by its segments and hands it the decoded parameters, the query and the body', async () => {
    expect(await ask('GET', '/admin/outbox', 'status=dead')).toEqual({ status: 200, body: { status: 'dead' } });
    expect(await ask('GET', '/admin/outbox/a%2Fb')).toEqual({ status: 200, body: { id: 'a/b' } });
    expect(await ask('POST', '/admin/outbox/m1/replay', '', { why: 1 })).toEqual({ status: 202, body: { id: 'm1', body: { why: 1 } } });
    expect(await ask('DELETE', '/admin/outbox/m1')).toEqual({ status: 204, body: undefined });
  });

  it('answers 405 with the allowed methods for a known path, and nothing (404) for an unknown one', async () => {
    expect(await ask('POST', '/admin/outbox/m1')).toEqual({ status: 405, body: { error: 'POST is not allowed here', allow: ['GET', 'DELETE'] } });
    expect(ask('GET', '/admin/outbox/m1/other')).toBeUndefined();
    expect(ask('GET', '/admin/outbox/')).toBeUndefined(); // an empty parameter is no parameter
    expect(ask('GET', '/admin/outbox/%E0%A4%A')).toBeUndefined(); // a malformed escape
  });

  it('refuses a table that defines the same route twice', () => {
    expect(() => createAdminRouter([...routes, routes[0]!])).toThrow(/GET \/admin\/outbox is defined twice/);
  });
});
