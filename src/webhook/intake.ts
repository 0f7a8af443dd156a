import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { WebhookConfig } from '../config/schema.js';
import { GatehouseError } from '../core/errors.js';
import type { Exchange, Stage } from '../core/exchange.js';
import { buildUpstreamHeaders, type RequestHeaderPlan } from '../core/forwarding.js';
import { findHeader } from '../core/headers.js';
import { sendProblem } from '../core/problem.js';
import type { Clock } from '../core/clock.js';
import { type HeaderCheck, type Rejection, type SignedHeaders, type SignedRequest, type Verifier } from './signature.js';
import type { DeliveryStore, NewDelivery, NewMessage } from '../delivery/store.js';

export type IntakeResult = 'verified' | 'invalid' | 'duplicate' | 'overloaded' | 'filtered';

export interface IntakeObserver {
  intake(route: string, result: IntakeResult): void;
  /** The intake's span as a traceparent, stored so delivery spans can link to it. */
  traceparent(ex: Exchange): string | undefined;
}

export interface IntakeOptions {
  readonly route: string;
  readonly cfg: WebhookConfig;
  /** What the headers alone refuse, before the body is read. */
  readonly checkHeaders: HeaderCheck;
  readonly verify: Verifier;
  /** Bodies of this route being read or handled now: at most `cfg.maxConcurrent`. Outlives reloads. */
  readonly reading: { active: number };
  readonly store: () => DeliveryStore;
  /**
   * The deliveries of a verified event, one per destination that wants its type (SPEC §14); none:
   * the event is recorded `filtered` and acknowledged.
   */
  readonly deliveriesFor: (req: SignedRequest) => NewDelivery[];
  /** Called once an event is stored: its workers deliver it now rather than at the next poll. */
  readonly stored: () => void;
  /** How the route shapes request headers, for the stored event (see deliveryHeaderPlan). */
  readonly headers: RequestHeaderPlan;
  readonly clock: Clock;
  readonly observer: IntakeObserver;
  readonly logger: Logger;
  readonly isDraining: () => boolean;
}

/**
 * Headers a stored event never keeps, besides what every forwarded request drops: its framing
 * (the body is delivered whole) and gatehouse's own delivery headers, which a client must not forge.
 */
const DROPPED = ['content-length', 'gatehouse-webhook-id', 'gatehouse-webhook-event-id', 'gatehouse-webhook-attempt', 'gatehouse-webhook-source'];

/** The route's request-header plan for stored events: trace context is the delivery's own. */
export function deliveryHeaderPlan(route: RequestHeaderPlan): RequestHeaderPlan {
  return { ...route, strip: new Set([...route.strip, ...DROPPED]), replaceTraceContext: true };
}

/** What a webhook route adds to the pipeline: a last stage before the body, and the handler. */
export interface Intake {
  /**
   * The last stage: the signature header (presence, format, timestamp) and one of the route's
   * `maxConcurrent` slots, checked before `100 Continue` and before any byte of the body is read.
   * A refusal goes out with `Connection: close`, the body unread.
   */
  readonly admit: Stage;
  /**
   * The route handler: read the raw body (bounded by maxBodySize), verify the provider's
   * signature, then store the event durably and de-duplicated in one atomic step, and only then
   * answer 200. Nothing unverified is stored; nothing is forwarded from here: the delivery worker
   * does that in the background.
   */
  readonly handler: (ex: Exchange) => void;
}

export function compileIntake(o: IntakeOptions): Intake {
  const { route, cfg, verify, clock, observer, logger } = o;

  const fail = (ex: Exchange, err: GatehouseError, closing = false) => {
    ex.status = err.status;
    ex.errorCode = err.code;
    sendProblem(ex.res, err, {
      route,
      traceId: ex.traceId,
      requestId: ex.requestId,
      extraHeaders: ex.responseHeaders,
      closing: closing || o.isDraining(),
    });
  };

  const answer = (ex: Exchange, outcome: 'accepted' | 'duplicate' | 'filtered', id: string | undefined, eventId: string) => {
    const body = JSON.stringify({ status: outcome, id, eventId });
    const headers = [
      'content-type', 'application/json',
      'content-length', String(Buffer.byteLength(body)),
      'cache-control', 'no-store',
      'gatehouse-webhook', outcome,
      'x-request-id', ex.requestId,
    ];
    if (id !== undefined) headers.push('gatehouse-webhook-id', id);
    if (ex.responseHeaders !== undefined) headers.push(...ex.responseHeaders);
    if (o.isDraining()) headers.push('connection', 'close');
    ex.status = 200;
    ex.res.writeHead(200, headers);
    ex.res.end(body);
  };

  /** Counted and traced; the caller answers 401 with it. */
  const invalid = (ex: Exchange, rejection: Rejection): GatehouseError => {
    observer.intake(route, 'invalid');
    ex.event('gatehouse.webhook.invalid', { reason: rejection.reason });
    return new GatehouseError('invalid_signature', `${cfg.provider} webhook rejected: ${rejection.reason}`);
  };

  /** Reads, verifies and stores one event (admitted: it holds a reading slot). */
  async function receive(ex: Exchange, headers: SignedHeaders): Promise<void> {
    let body: Buffer;
    try {
      body = await readBody(ex.body);
    } catch (err) {
      if (err instanceof GatehouseError) fail(ex, err, true);
      return; // the provider went away mid-body: nobody to answer
    }
    const req = signedRequest(headers, body);
    const verdict = verify(req, clock.now());
    if (!verdict.ok) {
      fail(ex, invalid(ex, verdict));
      return;
    }
    observer.intake(route, 'verified');
    const eventId = verdict.eventId ?? `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const receivedAt = clock.now();
    const event: NewMessage = {
      id: randomUUID(),
      route,
      kind: 'webhook',
      provider: cfg.provider,
      eventId,
      createdAt: receivedAt,
      method: ex.method,
      path: ex.path + ex.query,
      // the provider's headers (signature included) and the forwarding facts, as a proxied request has them
      headers: buildUpstreamHeaders(ex, o.headers),
      body,
      requestId: ex.requestId,
      trace: observer.traceparent(ex),
    };
    const deliveries = o.deliveriesFor(req);
    let result;
    try {
      // a filtered event is stored too, without deliveries: its id is claimed, so a retry of it is a duplicate
      result = await o.store().accept(deliveries.length > 0 ? event : { ...event, body: Buffer.alloc(0) }, deliveries, receivedAt, { key: eventId, ttlMs: cfg.dedupe.ttl });
    } catch (err) {
      logger.error({ route, eventId, err: (err as Error).message }, 'could not store a webhook event; the provider was told to retry');
      fail(ex, new GatehouseError('store_unavailable', 'the webhook could not be stored durably; try again later', { 'retry-after': '5' }));
      return;
    }
    ex.event('gatehouse.webhook.stored', { 'gatehouse.webhook.id': event.id, 'gatehouse.webhook.event_id': eventId, 'gatehouse.webhook.result': result });
    if (result === 'duplicate') {
      observer.intake(route, 'duplicate');
      answer(ex, 'duplicate', undefined, eventId);
      return;
    }
    if (deliveries.length === 0) {
      observer.intake(route, 'filtered');
      answer(ex, 'filtered', event.id, eventId);
      return;
    }
    answer(ex, 'accepted', event.id, eventId);
    o.stored();
  }

  const { reading } = o;
  const max = cfg.maxConcurrent;
  const release = () => reading.active--;

  return {
    admit: function webhookAdmission(ex) {
      // before any byte of the body: a stale or malformed signature header costs no memory
      const early = o.checkHeaders(headersOf(ex), clock.now());
      if (early !== undefined) return invalid(ex, early);
      if (reading.active >= max) {
        observer.intake(route, 'overloaded');
        return new GatehouseError('overloaded', `webhook route '${route}' is reading ${max} bodies already (webhook.maxConcurrent); try again later`, { 'retry-after': '1' });
      }
      // the slot is held until the answer is out, or the provider is gone
      reading.active++;
      ex.res.once('close', release);
      return undefined;
    },
    handler: function webhookIntake(ex) {
      receive(ex, headersOf(ex)).catch((err: unknown) => {
        logger.error({ route, err: (err as Error).message }, 'webhook intake failed');
        if (!ex.res.headersSent) fail(ex, new GatehouseError('store_unavailable', 'the webhook could not be stored; try again later'));
      });
    },
  };
}

const headersOf = (ex: Exchange): SignedHeaders => ({ header: (name) => findHeader(ex.req.rawHeaders, name) });

/** The raw body, whole. The pipeline bounds it by the route's maxBodyBytes (413) before it gets here. */
async function readBody(stream: Readable | Buffer | null): Promise<Buffer> {
  if (stream === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(stream)) return stream;
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** A request as verifiers and readers see it; its body parsed as JSON once, on first use. */
export function signedRequest(headers: SignedHeaders, body: Buffer): SignedRequest {
  let parsed: { value: unknown } | undefined;
  return {
    body,
    header: (name) => headers.header(name),
    json() {
      if (parsed === undefined) {
        try {
          parsed = { value: JSON.parse(body.toString('utf8')) as unknown };
        } catch {
          parsed = { value: undefined };
        }
      }
      return parsed.value;
    },
  };
}
