import { describe, expect, it } from 'vitest';
import { redactQuery } from '../../../src/telemetry/http-spans.js';

describe('redactQuery', () => {
  it('replaces the values of secret-looking keys, keeps the rest byte for byte', () => {
    expect(redactQuery('page=2&sort=asc')).toBe('page=2&sort=asc');
    expect(redactQuery('access_token=a&X-Amz-Signature=b&client_secret=c&password=d&code=e&sig=f&apiKey=g&q=token')).toBe(
      'access_token=REDACTED&X-Amz-Signature=REDACTED&client_secret=REDACTED&password=REDACTED&code=REDACTED&sig=REDACTED&apiKey=REDACTED&q=token',
    );
    expect(redactQuery('%74oken=a&flag&design=x')).toBe('%74oken=REDACTED&flag&design=x');
  });
});
