import { describe, expect, it } from 'vitest';
import { parseDuration, parseSize } from '../../../src/config/units.js';

describe('durations and sizes', () => {
  it('parses durations with a unit into milliseconds', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('2s')).toBe(2_000);
    expect(parseDuration('1.5s')).toBe(1_500);
    expect(parseDuration('1m')).toBe(60_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('0s')).toBe(0);
  });

  it('refuses a duration without a unit or with an unknown one', () => {
    for (const text of ['5', '', 's', '5 s', '-1s', '1d', '5sec', '1e3ms', 'fast']) expect(parseDuration(text), text).toBeUndefined();
  });

  it('parses sizes with binary multiples, any case', () => {
    expect(parseSize('512b')).toBe(512);
    expect(parseSize('64kb')).toBe(65_536);
    expect(parseSize('10mb')).toBe(10 * 1024 * 1024);
    expect(parseSize('1GB')).toBe(1024 ** 3);
    expect(parseSize('1.5kb')).toBe(1_536);
  });

  it('refuses a size without a unit', () => {
    for (const text of ['1024', '', 'mb', '10 mb', '-1kb', '1tb']) expect(parseSize(text), text).toBeUndefined();
  });
});
