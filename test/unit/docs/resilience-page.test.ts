import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const section = /<!-- section:resilience -->([\s\S]*?)<!-- \/section:resilience -->/.exec(readme)?.[1] ?? '';

// shipped.test.ts loads every YAML block of the README; this checks that none of the keys is missing.
describe('README: resilience', () => {
  it('documents every resilience key by example', () => {
    for (const key of ['attempts', 'on:', 'backoff', 'perTryTimeout', 'respectRetryAfter', 'budget', 'maxBodySize', 'idempotencyKey', 'circuitBreaker', 'consecutiveFailures', 'failureRatio', 'minRequests', 'window', 'openFor', 'halfOpenRequests', 'maxConcurrent', 'loadBalancing', 'healthCheck', 'unhealthyThreshold', 'healthyThreshold', 'interval', 'ejection', 'baseTime', 'maxTime', 'maxPercent', 'connectTimeout']) {
      expect(section, key).toContain(key);
    }
  });
});
