import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../../src/config/load.js';

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const section = /<!-- section:resilience -->([\s\S]*?)<!-- \/section:resilience -->/.exec(readme)?.[1] ?? '';
const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);

describe('README: resilience', () => {
  it('has its configuration examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6);
  });

  it.each(blocks.map((b, i) => [i, b] as const))('example %i is a valid config', (_i, yaml) => {
    expect(() => loadConfigText(yaml, 'README.md')).not.toThrow();
  });

  it('documents every resilience key', () => {
    for (const key of ['attempts', 'on:', 'backoff', 'perTryTimeout', 'respectRetryAfter', 'budget', 'maxBodySize', 'idempotencyKey', 'circuitBreaker', 'consecutiveFailures', 'failureRatio', 'minRequests', 'window', 'openFor', 'halfOpenRequests', 'maxConcurrent', 'loadBalancing', 'healthCheck', 'unhealthyThreshold', 'healthyThreshold', 'interval', 'ejection', 'baseTime', 'maxTime', 'maxPercent', 'connectTimeout']) {
      expect(section, key).toContain(key);
    }
  });
});
