import { afterEach, describe, expect, it, vi } from 'vitest';
import { createTimeoutQueue } from '../../../src/resilience/timeout-queue.js';

describe('timeout queue (one duration, FIFO)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('expires each item after the duration, in order, unless cancelled', () => {
    vi.useFakeTimers();
    let t = 0;
    const expired: string[] = [];
    const q = createTimeoutQueue<string>(100, (x) => expired.push(`${x}@${t}`), () => t);
    q.add('a');
    t = 30;
    const b = q.add('b');
    t = 60;
    q.add('c');
    t = 100;
    vi.advanceTimersByTime(100);
    expect(expired).toEqual(['a@100']);
    q.cancel(b);
    t = 160;
    vi.advanceTimersByTime(60);
    expect(expired).toEqual(['a@100', 'c@160']);
    expect(q.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0); // nothing left armed
  });

  it('keeps a single timer however many timeouts run', () => {
    vi.useFakeTimers();
    let t = 0;
    const q = createTimeoutQueue<number>(1_000, () => {}, () => t);
    const entries = [];
    for (let i = 0; i < 10_000; i++) {
      t = i / 10;
      entries.push(q.add(i));
    }
    expect(vi.getTimerCount()).toBe(1);
    for (const e of entries) q.cancel(e);
    expect(q.size).toBe(0);
  });

  it('re-arms for the next live item after the head was cancelled', () => {
    vi.useFakeTimers();
    let t = 0;
    const expired: number[] = [];
    const q = createTimeoutQueue<number>(50, (x) => expired.push(x), () => t);
    const first = q.add(1);
    t = 40;
    q.add(2);
    q.cancel(first);
    t = 50;
    vi.advanceTimersByTime(50); // the timer armed for 1 fires; 2 is not due yet
    expect(expired).toEqual([]);
    t = 90;
    vi.advanceTimersByTime(40);
    expect(expired).toEqual([2]);
  });
});
