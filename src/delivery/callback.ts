import { createHmac } from 'node:crypto';
import { request } from 'undici';
import type { UpstreamResult } from '../core/upstream.js';
import { UpstreamError } from '../core/errors.js';
import type { StoredDelivery } from './store.js';

/** The longest answer body a callback carries (SPEC §11). */
export const CALLBACK_BODY_BYTES = 64 * 1024;

/**
 * The Standard Webhooks signature (standardwebhooks.com, as Svix signs): `v1,` and the base64
 * HMAC-SHA256 of `id.timestamp.body` under the secret's key (the base64 after `whsec_`).
 */
export function signStandardWebhook(secret: string, id: string, timestampS: number, body: Buffer): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const mac = createHmac('sha256', key).update(`${id}.${timestampS}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

/** What an outbox callback says (SPEC §11): how the message ended and the upstream's last answer. */
export function callbackPayload(d: StoredDelivery, status: 'delivered' | 'dead', result: UpstreamResult | undefined, error: string | undefined): Buffer {
  const answered = result !== undefined && result.failure === undefined && result.status > 0;
  const headers: Record<string, string> = {};
  if (answered) {
    for (let i = 0; i + 1 < result.headers.length; i += 2) {
      const name = result.headers[i]!.toLowerCase();
      headers[name] = name in headers ? `${headers[name]}, ${result.headers[i + 1]}` : result.headers[i + 1]!;
    }
  }
  return Buffer.from(
    JSON.stringify({
      id: d.id,
      route: d.route,
      status,
      attempts: d.attempts,
      idempotencyKey: d.idempotencyKey ?? null,
      response: answered ? { status: result.status, headers, body: result.body.subarray(0, CALLBACK_BODY_BYTES).toString('utf8') } : null,
      error: status === 'dead' ? (error ?? null) : null,
    }),
  );
}

/**
 * POSTs a callback to the store, signed. Never rejects: a failure is a result, as an upstream
 * call's is. The store is not an upstream of the config: no breaker or credentials, only the
 * route's timeout.
 */
export async function sendCallback(url: string, secret: string, d: StoredDelivery, nowMs: number, timeoutMs: number, signal: AbortSignal): Promise<UpstreamResult> {
  const body = d.payload ?? Buffer.alloc(0);
  const timestamp = Math.floor(nowMs / 1000);
  const headers = {
    'content-type': 'application/json',
    'webhook-id': d.id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signStandardWebhook(secret, d.id, timestamp, body),
    'user-agent': 'gatehouse-outbox',
  };
  try {
    const res = await request(url, { method: 'POST', headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
    const text = Buffer.from(await res.body.arrayBuffer());
    const flat: string[] = [];
    for (const [name, value] of Object.entries(res.headers)) flat.push(name, Array.isArray(value) ? value.join(', ') : (value ?? ''));
    return { status: res.statusCode, headers: flat, body: text.subarray(0, CALLBACK_BODY_BYTES), failure: undefined, traceId: '' };
  } catch (err) {
    const timedOut = (err as { name?: string }).name === 'TimeoutError' || (err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT';
    return { status: 0, headers: [], body: Buffer.alloc(0), failure: new UpstreamError(timedOut ? 'timeout' : 'connect-failure', `callback to the store failed: ${(err as Error).message}`), traceId: '' };
  }
}
