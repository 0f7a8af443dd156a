/*
 * Signature building blocks shared by every provider (one compare helper for all of them).
 */
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/** What can be known of a request before its body is read: its headers. */
export interface SignedHeaders {
  /** First value of a request header, by lowercase name. */
  header(lowerName: string): string | undefined;
}

/** What a verifier sees of a request: the raw body bytes and its headers. */
export interface SignedRequest extends SignedHeaders {
  readonly body: Buffer;
  /** The body parsed as JSON (once, memoised); undefined when it is not JSON. */
  json(): unknown;
}

/** Why a request is not the provider's, safe to show. */
export type Rejection = { readonly ok: false; readonly reason: string };

/** ok: the provider signed it (eventId when the provider names one); otherwise why not. */
export type Verdict = { readonly ok: true; readonly eventId: string | undefined } | Rejection;

export type Verifier = (req: SignedRequest, nowMs: number) => Verdict;

/**
 * What the headers alone can refuse, before a byte of the body is read: a signature header that
 * is missing or malformed, a timestamp outside the replay window. undefined: read the body.
 */
export type HeaderCheck = (req: SignedHeaders, nowMs: number) => Rejection | undefined;

export const reject = (reason: string): Rejection => ({ ok: false, reason });

export const isRejection = <T extends object>(value: T | Rejection): value is Rejection => 'reason' in value;

/** An HMAC-SHA256 is 32 bytes: a signature of another length can never match. */
export const SHA256_BYTES = 32;

/** A secret as an HMAC key: a KeyObject never prints its bytes. */
export const keyOf = (bytes: Buffer): KeyObject => createSecretKey(bytes);

/** HMAC of the parts, concatenated: no copy of the body is made. */
export function hmac(algorithm: string, key: KeyObject, ...parts: (string | Buffer)[]): Buffer {
  const mac = createHmac(algorithm, key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

/**
 * THE signature comparison for every provider: constant time over equal lengths (a length
 * mismatch is not secret: every provider's signature has a fixed size).
 */
export function safeEqual(expected: Buffer, given: Buffer): boolean {
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Decodes a signature as sent: hex (either case) or base64; undefined when it is not valid. */
export function decodeSignature(text: string, encoding: 'hex' | 'base64'): Buffer | undefined {
  const t = text.trim();
  if (encoding === 'hex') return /^(?:[0-9a-fA-F]{2})+$/.test(t) ? Buffer.from(t, 'hex') : undefined;
  return /^[A-Za-z0-9+/]+={0,2}$/.test(t) ? Buffer.from(t, 'base64') : undefined;
}

/** True when any signature matches the MAC made with any key (secret rotation: any one is enough). */
export function anyMatches(keys: readonly KeyObject[], signatures: readonly Buffer[], mac: (key: KeyObject) => Buffer): boolean {
  let matched = false;
  for (const key of keys) {
    const expected = mac(key);
    // no early exit: the time taken does not tell which secret or signature matched
    for (const sig of signatures) if (safeEqual(expected, sig)) matched = true;
  }
  return matched;
}

/** A Unix-seconds timestamp inside `toleranceMs` of now (both ways: a future stamp is as suspect). */
export function checkTimestamp(text: string | undefined, toleranceMs: number, nowMs: number): string | undefined {
  if (text === undefined || !/^\d{1,12}$/.test(text)) return 'the timestamp is missing or not a number';
  if (toleranceMs > 0 && Math.abs(nowMs - Number(text) * 1000) > toleranceMs) {
    return `the timestamp is outside the replay window of ${toleranceMs / 1000}s`;
  }
  return undefined;
}

export { readKey } from '../core/key-source.js';
