import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createAccessLog, formatAccessLine, type AccessLogEntry } from '../../../src/telemetry/access-log.js';

const entry: AccessLogEntry = {
  route: 'store-api',
  method: 'GET',
  path: '/api/orders/42',
  status: 200,
  durationMs: 1.234,
  upstream: 'store',
  attempts: 1,
  retrySkipped: null,
  traceId: '0af7651916cd43dd8448eb211c80319c',
  requestId: 'req-1',
  error: null,
  client: '10.0.0.7',
};

const TIME = '2025-01-02T03:04:05.678Z';

describe('access log line', () => {
  it('is exactly JSON.stringify of the entry with the time first, every key present', () => {
    const line = formatAccessLine(entry, TIME);
    expect(line).toBe(JSON.stringify({ time: TIME, ...entry }) + '\n');
    const refused = { ...entry, route: null, upstream: null, traceId: null, error: 'no_route', status: 404, attempts: 0 };
    expect(formatAccessLine(refused, TIME)).toBe(JSON.stringify({ time: TIME, ...refused }) + '\n');
    const skipped = { ...entry, status: 503, retrySkipped: 'budget' };
    expect(formatAccessLine(skipped, TIME)).toBe(JSON.stringify({ time: TIME, ...skipped }) + '\n');
  });

  it('keeps the keys of background lines (webhook deliveries) after the request keys', () => {
    const delivery = { ...entry, status: null, client: null, kind: 'webhook-delivery' as const, webhookId: 'w1', eventId: 'evt_1', result: 'retried' };
    expect(formatAccessLine(delivery, TIME)).toBe(JSON.stringify({ time: TIME, ...delivery }) + '\n');
  });

  it('escapes quotes, backslashes, control characters and lone surrogates in the path', () => {
    const odd = { ...entry, path: '/a"b\\c\u0001d\ud800e\u00e9' };
    const line = formatAccessLine(odd, TIME);
    expect(line).toBe(JSON.stringify({ time: TIME, ...odd }) + '\n');
    expect(JSON.parse(line)).toMatchObject({ path: odd.path });
  });

  it('writes the lines of a few milliseconds in one write, and flush() hands over what is pending', async () => {
    const writes: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        writes.push(chunk.toString());
        done();
      },
    });
    const log = createAccessLog(sink);
    log(entry);
    log({ ...entry, requestId: 'req-2' });
    await new Promise((resolve) => setImmediate(resolve));
    log({ ...entry, requestId: 'req-2b' });
    expect(writes).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(writes).toHaveLength(1);
    expect(writes[0]!.trimEnd().split('\n').map((l) => JSON.parse(l).requestId)).toEqual(['req-1', 'req-2', 'req-2b']);

    log({ ...entry, requestId: 'req-3' });
    log.flush();
    expect(writes).toHaveLength(2);
    expect(JSON.parse(writes[1]!)).toMatchObject({ requestId: 'req-3' });
    expect(Date.parse(JSON.parse(writes[1]!).time)).not.toBeNaN();
  });
});
