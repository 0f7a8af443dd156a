import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const page = readFileSync(new URL('../../../docs/resilience.md', import.meta.url), 'utf8');

// shipped.test.ts loads every YAML block of the docs; this checks that none of the keys is missing.
describe('docs/resilience.md', () => {
  it('documents every resilience key by example', () => {
    for (const key of ['attempts', 'on:', 'backoff', 'perTryTimeout', 'respectRetryAfter', 'budget', 'maxBodySize', 'idempotencyKey', 'circuitBreaker', 'consecutiveFailures', 'failureRatio', 'minRequests', 'window', 'openFor', 'halfOpenRequests', 'maxConcurrent', 'loadBalancing', 'healthCheck', 'unhealthyThreshold', 'healthyThreshold', 'interval', 'ejection', 'baseTime', 'maxTime', 'maxPercent', 'connectTimeout']) {
      expect(page, key).toContain(key);
    }
  });
});
