import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { GatehouseError, UpstreamError } from '../../../src/core/errors.js';
import type { UpstreamResult } from '../../../src/core/upstream.js';
import { signStandardWebhook } from '../../../src/delivery/callback.js';
import { outboxVerdict } from '../../../src/delivery/outbox.js';

const answer = (status: number): UpstreamResult => ({ status, headers: [], body: Buffer.alloc(0), failure: undefined, traceId: '' });
const failed = (failure: UpstreamResult['failure']): UpstreamResult => ({ status: 0, headers: [], body: Buffer.alloc(0), failure, traceId: '' });

describe('outbox outcomes (SPEC §11)', () => {
  it('counts a 2xx as delivered; retries 408, 425, 429, 5xx and failures without an answer; any other 4xx is final', () => {
    expect([200, 201, 204, 299].map((s) => outboxVerdict(answer(s)))).toEqual(['delivered', 'delivered', 'delivered', 'delivered']);
    expect([408, 425, 429, 500, 502, 503, 504].map((s) => outboxVerdict(answer(s)))).toEqual(Array(7).fill('retry'));
    expect([400, 401, 403, 404, 409, 410, 422].map((s) => outboxVerdict(answer(s)))).toEqual(Array(7).fill('final'));
    expect(outboxVerdict(failed(new UpstreamError('connect-failure', 'ECONNREFUSED')))).toBe('retry');
    expect(outboxVerdict(failed(new GatehouseError('circuit_open', 'open')))).toBe('retry');
  });
});

describe('callback signature', () => {
  it('is what an independent Standard Webhooks implementation verifies', () => {
    const secret = `whsec_${Buffer.from('a-sixteen-byte-key-or-more').toString('base64')}`;
    const body = Buffer.from('{"id":"m1","status":"delivered"}');
    const ts = 1_765_000_000;
    const headers = { 'webhook-id': 'm1', 'webhook-timestamp': String(ts), 'webhook-signature': signStandardWebhook(secret, 'm1', ts, body) };
    const wh = new Webhook(secret);
    // the library checks the timestamp against its own clock: sign "now" for it
    const now = Math.floor(Date.now() / 1000);
    expect(wh.verify(body.toString(), { ...headers, 'webhook-timestamp': String(now), 'webhook-signature': signStandardWebhook(secret, 'm1', now, body) })).toEqual({ id: 'm1', status: 'delivered' });
    expect(wh.sign('m1', new Date(ts * 1000), body.toString())).toBe(headers['webhook-signature']);
  });
});
