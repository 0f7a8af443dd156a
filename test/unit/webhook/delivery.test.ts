import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../../src/config/load.js';
import { systemClock } from '../../../src/core/clock.js';
import { createDeliveryWorker, leaseMs, retryDelayMs } from '../../../src/webhook/delivery.js';
import { sqliteWebhookStore } from '../../../src/webhook/store-sqlite.js';
import { onCleanup } from '../../helpers/cleanup.js';
import { LineSink } from '../../helpers/gatehouse.js';
import { eventually } from '../../helpers/http.js';

describe('delivery back-off', () => {
  it('doubles from base up to max, with equal jitter between half and all of it', () => {
    const low = () => 0;
    const high = () => 1;
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(n, 1_000, 10_000, high))).toEqual([1_000, 2_000, 4_000, 8_000, 10_000]);
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(n, 1_000, 10_000, low))).toEqual([500, 1_000, 2_000, 4_000, 5_000]);
    expect(retryDelayMs(40, 1_000, 600_000, high)).toBe(600_000);
  });

  it('leases an event for longer than an attempt may take', () => {
    expect(leaseMs(30_000)).toBeGreaterThan(30_000 * 2);
    expect(leaseMs(1_000)).toBe(3_000);
  });
});

describe('the pending gauge', () => {
  it('counts the events that wait while the store cannot take writes (a read-only database: claims fail, counting reads)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pending-'));
    const file = join(dir, 'events.db');
    const writer = new Database(file);
    writer.pragma('journal_mode = WAL');
    onCleanup(() => writer.close());
    const writable = sqliteWebhookStore(writer, true);
    for (const id of ['a', 'b']) {
      await writable.accept(
        { id, route: 'hooks', provider: 'stripe', eventId: `evt_${id}`, receivedAt: 1, method: 'POST', path: '/h', headers: [], body: Buffer.from('{}'), orderKey: undefined, requestId: id, trace: undefined },
        3_600_000,
        1,
      );
    }
    const readOnly = new Database(file, { readonly: true });
    onCleanup(() => readOnly.close());
    const { config } = loadConfigText(
      `
version: 1
listeners: [{ name: in, address: 127.0.0.1:0 }]
upstreams: { app: { endpoints: [http://127.0.0.1:1] } }
routes: [{ name: hooks, listener: in, upstream: app, webhook: { provider: github, secret: s } }]
`,
      'test.yaml',
    );
    const counted: number[] = [];
    const log = new LineSink();
    const worker = createDeliveryWorker({
      route: 'hooks',
      cfg: config.routes[0]!.webhook!,
      store: () => sqliteWebhookStore(readOnly, true),
      owner: 'test',
      // due events are claimed (a write); no endpoint would take them anyway
      target: () => ({
        upstream: { name: 'app', call: () => Promise.reject(new Error('no event is claimed from a read-only store')) },
        rewrite: (p) => p,
        host: undefined,
        timeoutMs: 1_000,
      }),
      clock: systemClock,
      rand: Math.random,
      observer: { attempted() {}, pending: (_route, n) => counted.push(n) },
      logger: pino(log),
    });
    worker.start();
    onCleanup(() => worker.stop(0));
    await eventually(() => counted.at(-1) === 2);
    expect(log.all).toContain('webhook store unavailable');
  });
});
