import { createHash } from 'node:crypto';
import { Secret } from './secret.js';

/**
 * A stable hash of a config section, secrets included (hashed, never printed). Runtime state
 * (pools, breakers, quota buckets) survives a reload exactly when its section's fingerprint does.
 */
export function fingerprint(value: unknown): string {
  // JSON.stringify applies toJSON (which redacts a Secret) before the replacer: read the raw value.
  const json = JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    if (raw instanceof Secret) return `secret:${createHash('sha256').update(raw.reveal()).digest('hex')}`;
    if (raw instanceof RegExp) return raw.source;
    return v;
  });
  return createHash('sha256').update(json ?? '').digest('hex').slice(0, 16);
}
