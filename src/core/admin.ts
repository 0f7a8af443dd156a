/**
 * The admin API's route table (SPEC §9): concerns contribute read-only views and actions as
 * values; the admin listener (src/admin/) owns HTTP, authentication and JSON.
 */

export interface AdminRequest {
  readonly method: string;
  /** The path's parameters, decoded: `:id` in `/admin/outbox/:id`. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** The request's JSON body, undefined when it had none (a malformed one is answered 400 first). */
  readonly body: unknown;
}

export interface AdminAnswer {
  readonly status: number;
  /** Sent as JSON; none for a 204. */
  readonly body?: unknown;
}

export interface AdminRoute {
  readonly method: 'GET' | 'POST' | 'DELETE';
  /** Segments, `:name` for a parameter: `/admin/webhooks/dead/:id/replay`. */
  readonly path: string;
  handle(req: AdminRequest): AdminAnswer | Promise<AdminAnswer>;
}

export const answer = (status: number, body?: unknown): AdminAnswer => ({ status, body });
