import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { createDeliveryWorker, leaseMs, retryDelayMs } from '../../../src/delivery/worker.js';
import { sqliteDeliveryStore } from '../../../src/delivery/store-sqlite.js';
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

  it('leases a delivery for longer than an attempt may take', () => {
    expect(leaseMs(30_000)).toBeGreaterThan(30_000 * 2);
    expect(leaseMs(1_000)).toBe(3_000);
  });
});

describe('the pending gauge', () => {
  it('counts the messages that wait while the store cannot take writes (a read-only database: claims fail, counting reads)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pending-'));
    const file = join(dir, 'events.db');
    const writer = new Database(file);
    writer.pragma('journal_mode = WAL');
    onCleanup(() => writer.close());
    const writable = sqliteDeliveryStore(writer, true);
    for (const id of ['a', 'b']) {
      await writable.accept(
        { id, route: 'hooks', kind: 'webhook', provider: 'stripe', eventId: `evt_${id}`, createdAt: 1, method: 'POST', path: '/h', headers: [], body: Buffer.from('{}'), requestId: id, trace: undefined },
        [{ destination: 'upstream' }],
        1,
        { key: `evt_${id}`, ttlMs: 3_600_000 },
      );
    }
    const readOnly = new Database(file, { readonly: true });
    onCleanup(() => readOnly.close());
    const counted: number[] = [];
    const log = new LineSink();
    const worker = createDeliveryWorker({
      route: 'hooks',
      destination: 'upstream',
      concurrency: 8,
      policy: { attempts: 8, backoff: { base: 1_000, max: 600_000 }, deadLetter: true, keepBody: false, verdict: () => 'delivered' },
      store: () => sqliteDeliveryStore(readOnly, true),
      owner: 'test',
      // due messages are claimed (a write); nothing is sent anyway
      send: () => Promise.reject(new Error('no message is claimed from a read-only store')),
      timeoutMs: () => 1_000,
      clock: systemClock,
      rand: Math.random,
      observer: { attempted() {}, counted: (_route, _destination, n) => counted.push(n) },
      logger: pino(log),
    });
    worker.start();
    onCleanup(() => worker.stop(0));
    await eventually(() => counted.at(-1) === 2);
    expect(log.all).toContain('delivery store unavailable');
  });
});
