/**
 * A value gatehouse asserts in a request header (a claim, a certificate subject). Plain visible
 * ASCII passes as is; anything else (non-ASCII names, control characters that could split a
 * header) is sent percent-encoded as a whole, so no value can inject a header.
 */
export function toHeaderValue(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return encodeURIComponent(value);
  }
  return value;
}
