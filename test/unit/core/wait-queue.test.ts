import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createWaitQueue, type AttemptOutcome, type Priority } from '../../../src/core/wait-queue.js';

/**
 * The queue scheduler alone, on fake timers: a "bucket" here is a counter that gains one token
 * every `intervalMs`, asked through `attempt` exactly as the quota stage asks its store.
 */
function bucket(intervalMs: number, tokens = 0) {
  let available = tokens;
  let nextAt = Date.now() + intervalMs;
  const refill = () => {
    while (Date.now() >= nextAt) {
      available++;
      nextAt += intervalMs;
    }
  };
  return {
    attempts: 0,
    take(this: { attempts: number }, label: string): AttemptOutcome<string> {
      this.attempts++;
      refill();
      if (available > 0) {
        available--;
        return { done: label };
      }
      return { waitMs: nextAt - Date.now() };
    },
  };
}

describe('quota wait queue', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const expired = () => 'expired';

  it('releases waiters strictly by priority and first come first served within a class', async () => {
    const q = createWaitQueue({ maxQueue: 10, maxWaitMs: 60_000 });
    const b = bucket(100);
    const order: string[] = [];
    const join = (label: string, priority: Priority) =>
      q.wait('k', { priority, attempt: () => b.take(label), expired, firstWaitMs: 100 }).then((v) => order.push(v!));
    const all = [join('low-1', 'low'), join('normal-1', 'normal'), join('low-2', 'low'), join('high-1', 'high'), join('normal-2', 'normal'), join('high-2', 'high')];
    expect(q.size).toBe(6);
    expect(q.depth()).toEqual({ high: 2, normal: 2, low: 2 });
    await vi.advanceTimersByTimeAsync(600);
    await Promise.all(all);
    expect(order).toEqual(['high-1', 'high-2', 'normal-1', 'normal-2', 'low-1', 'low-2']);
    expect(q.size).toBe(0);
    expect(q.has('k')).toBe(false);
  });

  it('asks the store only for the head of a lane, and only when a refill is due (no polling)', async () => {
    const q = createWaitQueue({ maxQueue: 100, maxWaitMs: 60_000 });
    const b = bucket(100);
    const all = Array.from({ length: 20 }, (_, i) => q.wait('k', { priority: 'normal', attempt: () => b.take(String(i)), expired, firstWaitMs: 100 }));
    await vi.advanceTimersByTimeAsync(2000);
    expect(await Promise.all(all)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    // per token: the head that gets it, and the next head learning how long to wait
    expect(b.attempts).toBe(39);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(b.attempts).toBe(39);
  });

  it('lets a newcomer of higher priority go before those already waiting, at the next refill', async () => {
    const q = createWaitQueue({ maxQueue: 10, maxWaitMs: 60_000 });
    const b = bucket(100);
    const order: string[] = [];
    const join = (label: string, priority: Priority) => q.wait('k', { priority, attempt: () => b.take(label), expired, firstWaitMs: 100 }).then((v) => order.push(v!));
    const low = [join('low-1', 'low'), join('low-2', 'low')];
    await vi.advanceTimersByTimeAsync(150); // low-1 got the first token
    const high = join('high', 'high');
    await vi.advanceTimersByTimeAsync(200);
    await Promise.all([...low, high]);
    expect(order).toEqual(['low-1', 'high', 'low-2']);
  });

  it('keeps lanes of different keys apart: one empty bucket does not hold up another', async () => {
    const q = createWaitQueue({ maxQueue: 10, maxWaitMs: 60_000 });
    const slow = bucket(1000);
    const fast = bucket(10);
    let fastDone = false;
    void q.wait('slow', { priority: 'high', attempt: () => slow.take('s'), expired, firstWaitMs: 1000 });
    const f = q.wait('fast', { priority: 'low', attempt: () => fast.take('f'), expired, firstWaitMs: 10 }).then(() => (fastDone = true));
    await vi.advanceTimersByTimeAsync(20);
    await f;
    expect(fastDone).toBe(true);
    expect(q.size).toBe(1);
  });

  it('answers with `expired` once maxWait passes, and the others move up', async () => {
    const q = createWaitQueue({ maxQueue: 10, maxWaitMs: 250 });
    const b = bucket(200);
    const a = q.wait('k', { priority: 'normal', attempt: () => b.take('a'), expired: (last) => `expired after ${last}`, firstWaitMs: 200 });
    const c = q.wait('k', { priority: 'normal', attempt: () => b.take('c'), expired: (last) => `expired after ${last}`, firstWaitMs: 200 });
    await vi.advanceTimersByTimeAsync(200);
    expect(await a).toBe('a');
    await vi.advanceTimersByTimeAsync(50);
    expect(await c).toBe('expired after 200'); // its token would have come at 400 ms
    expect(q.size).toBe(0);
  });

  it('removes a waiter at once when its signal aborts, without asking the store for it', async () => {
    const depth: number[] = [];
    const q = createWaitQueue({ maxQueue: 10, maxWaitMs: 60_000, onDepth: (d) => depth.push(d) });
    const b = bucket(100);
    const leaving = new AbortController();
    const gone = q.wait('k', { priority: 'high', attempt: () => b.take('gone'), expired, signal: leaving.signal, firstWaitMs: 100 });
    const stays = q.wait('k', { priority: 'low', attempt: () => b.take('stays'), expired, firstWaitMs: 100 });
    leaving.abort();
    expect(await gone).toBeUndefined();
    expect(q.size).toBe(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(await stays).toBe('stays');
    expect(b.attempts).toBe(1);
    expect(depth).toEqual([1, 1, -1, -1]);
  });

  it('hands a result that arrives after its waiter left to `abandoned` (so a token can be given back)', async () => {
    const q = createWaitQueue({ maxQueue: 10, maxWaitMs: 60_000 });
    const leaving = new AbortController();
    let release: (o: AttemptOutcome<string>) => void = () => undefined;
    const abandoned: string[] = [];
    const w = q.wait('k', {
      priority: 'normal',
      attempt: () => new Promise<AttemptOutcome<string>>((r) => (release = r)),
      expired,
      abandoned: (v) => abandoned.push(v),
      signal: leaving.signal,
    });
    leaving.abort(); // while its attempt is with the store
    expect(await w).toBeUndefined();
    release({ done: 'granted' });
    await vi.advanceTimersByTimeAsync(0);
    expect(abandoned).toEqual(['granted']);
    expect(q.size).toBe(0);
    expect(q.has('k')).toBe(false);
  });

  it('says it is full at maxQueue', () => {
    const q = createWaitQueue({ maxQueue: 2, maxWaitMs: 60_000 });
    const b = bucket(1000);
    void q.wait('a', { priority: 'normal', attempt: () => b.take('1'), expired, firstWaitMs: 1000 });
    expect(q.isFull()).toBe(false);
    void q.wait('b', { priority: 'normal', attempt: () => b.take('2'), expired, firstWaitMs: 1000 });
    expect(q.isFull()).toBe(true);
  });

  it('passes on an attempt that fails (a store error) to that waiter only', async () => {
    const q = createWaitQueue({ maxQueue: 10, maxWaitMs: 60_000 });
    const b = bucket(100, 1);
    const failing = q.wait('k', { priority: 'high', attempt: () => Promise.reject(new Error('store exploded')), expired });
    const next = q.wait('k', { priority: 'low', attempt: () => b.take('next'), expired });
    await expect(failing).rejects.toThrow('store exploded');
    expect(await next).toBe('next');
  });
});

describe('wait queue wake', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('lets the head of a lane try again at once when capacity comes back early', async () => {
    const q = createWaitQueue({ maxQueue: 10, maxWaitMs: 60_000 });
    let free = false;
    const waiter = q.wait('k', { priority: 'normal', expired: () => 'expired', attempt: () => (free ? { done: 'granted' } : { waitMs: 30_000 }) });
    await vi.advanceTimersByTimeAsync(10);
    free = true;
    q.wake('other'); // another lane: nothing happens here
    await vi.advanceTimersByTimeAsync(10);
    expect(q.size).toBe(1);
    q.wake(); // every lane
    await expect(waiter).resolves.toBe('granted');
    expect(q.size).toBe(0);
  });
});
