import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../../src/config/schema.js';
import { Exchange } from '../../../src/core/exchange.js';
import { type AttemptResult, type Send } from '../../../src/core/send.js';
import { UpstreamError } from '../../../src/core/errors.js';
import type { Clock } from '../../../src/core/clock.js';
import { compileRetry, retry, type RetryObserver } from '../../../src/resilience/retry.js';

/** Time stands still; sleeping records the wait and returns at once. */
function fakeClock(waits: number[]): Clock {
  return {
    now: () => 1_700_000_000_000,
    monotonic: () => 1_000,
    sleep: (ms, signal) => {
      waits.push(ms);
      return signal?.aborted ? Promise.reject(signal.reason as Error) : Promise.resolve();
    },
  };
}

const silent: RetryObserver = { retry: () => {}, retrySkipped: () => {} };

function exchange(method = 'GET'): Exchange {
  const req = { method, rawHeaders: [] } as unknown as IncomingMessage;
  const res = { headersSent: false } as unknown as ServerResponse;
  const ex = new Exchange(req, res, 0);
  ex.deadlineAt = 60_000;
  return ex;
}

function policy(retryCfg: Record<string, unknown>, load = { inFlight: 1, retryAttemptsInFlight: 0, retriesInFlight: 0 }, waits: number[] = []) {
  const config = ConfigSchema.parse({
    version: 1,
    listeners: [{ name: 'in', address: '127.0.0.1:0' }],
    upstreams: { app: { endpoints: ['http://127.0.0.1:1'] } },
    routes: [{ name: 'r', listener: 'in', upstream: 'app', retry: retryCfg }],
  });
  const p = retry(compileRetry(config.routes[0]!.retry!), { clock: fakeClock(waits), rand: () => 0.5, observer: silent, load, generatesIdempotencyKey: false })!;
  return { p, load, waits };
}

/** An attempt that plays `outcomes` in order: a status (offered to ex.retryable first) or a failure. */
function scripted(outcomes: (number | UpstreamError | ((ex: Exchange) => Promise<AttemptResult>))[]): Send & { calls: number } {
  const send = async (ex: Exchange): Promise<AttemptResult> => {
    const o = outcomes[Math.min(send.calls++, outcomes.length - 1)]!;
    ex.attempts++;
    if (typeof o === 'function') return o(ex);
    if (o instanceof UpstreamError) throw o;
    const claimed = ex.retryable?.(ex, o, []) ?? false;
    return { statusCode: o, rawHeaders: [], committed: !claimed };
  };
  send.calls = 0;
  return send;
}

describe('retry policy', () => {
  it('retries a claimed answer after the decided wait and returns the committed one', async () => {
    const { p, load, waits } = policy({ attempts: 3, on: [503], backoff: { base: '100ms', max: '1s' } });
    const send = scripted([503, 503, 200]);
    const result = await p(send)(exchange());
    expect(result).toMatchObject({ statusCode: 200, committed: true });
    expect(send.calls).toBe(3);
    expect(waits).toEqual([50, 100]);
    expect(load.retriesInFlight).toBe(0);
  });

  it('commits the last attempt whatever it answers', async () => {
    const { p } = policy({ attempts: 2, on: [503] });
    const send = scripted([503, 503]);
    expect(await p(send)(exchange())).toMatchObject({ statusCode: 503, committed: true });
    expect(send.calls).toBe(2);
  });

  it('retries a listed failure and rethrows an unlisted one', async () => {
    const { p } = policy({ attempts: 3, on: ['connect-failure'] });
    const send = scripted([new UpstreamError('connect-failure', 'refused'), 200]);
    expect(await p(send)(exchange())).toMatchObject({ statusCode: 200 });
    const reset = scripted([new UpstreamError('reset', 'reset'), 200]);
    await expect(p(reset)(exchange())).rejects.toMatchObject({ kind: 'reset' });
    expect(reset.calls).toBe(1);
  });

  it('sends a POST without Idempotency-Key once', async () => {
    const { p } = policy({ attempts: 3, on: [503] });
    const send = scripted([503, 200]);
    expect(await p(send)(exchange('POST'))).toMatchObject({ statusCode: 503, committed: true });
    expect(send.calls).toBe(1);
  });

  it('never retries an exchange the deadline or the client cancelled', async () => {
    const { p, load } = policy({ attempts: 3, on: ['timeout'] });
    const ex = exchange();
    const send = scripted([
      (e) => {
        e.cancel('timeout', new UpstreamError('timeout', 'route timeout'));
        return Promise.reject(new UpstreamError('timeout', 'route timeout'));
      },
      200,
    ]);
    await expect(p(send)(ex)).rejects.toMatchObject({ kind: 'timeout' });
    expect(send.calls).toBe(1);
    expect(load.retriesInFlight).toBe(0);
  });

  it('releases every budget slot it takes, however the exchange ends', async () => {
    const { p, load } = policy({ attempts: 4, on: [503, 'reset'] });
    // claimed, then the discarded answer's body broke while the exchange was cancelled
    const drainFails = scripted([
      503,
      (e) => {
        e.retryable?.(e, 503, []);
        e.cancel('aborted', new UpstreamError('aborted', 'client gone'));
        return Promise.reject(new UpstreamError('reset', 'drain failed'));
      },
    ]);
    await expect(p(drainFails)(exchange())).rejects.toBeInstanceOf(UpstreamError);
    expect(load.retriesInFlight).toBe(0);

    // a wait cut short by cancellation
    const ex = exchange();
    const cancelled = scripted([
      (e) => {
        const claimed = e.retryable?.(e, 503, []);
        e.cancel('aborted', new UpstreamError('aborted', 'client gone'));
        return Promise.resolve({ statusCode: 503, rawHeaders: [], committed: !claimed });
      },
    ]);
    await expect(p(cancelled)(ex)).rejects.toBeInstanceOf(UpstreamError);
    expect(load.retriesInFlight).toBe(0);

    // exhausted, and successful after retries
    await p(scripted([503, 503, 503, 503]))(exchange());
    await p(scripted([new UpstreamError('reset', 'x'), 503, 200]))(exchange());
    expect(load.retriesInFlight).toBe(0);
  });

  it('stops retrying when the budget is spent and passes the answer on', async () => {
    const load = { inFlight: 100, retryAttemptsInFlight: 0, retriesInFlight: 20 };
    const { p } = policy({ attempts: 3, on: [503], budget: 0.2 }, load);
    const send = scripted([503, 200]);
    expect(await p(send)(exchange())).toMatchObject({ statusCode: 503, committed: true });
    expect(send.calls).toBe(1);
    expect(load.retriesInFlight).toBe(20);
  });
});
