/**
 * An MPTCP token (RFC 8684: the 32-bit connection identifier an MP_JOIN SYN names) as the
 * 4-byte big-endian key that owner queries, published entries and cluster messages carry. One
 * home for that layout: the data plane writes it into scratch space, the cluster codec and tools
 * take an allocated copy.
 */

/** Bytes of a token key. */
export const TOKEN_KEY_BYTES = 4;

/** Write `token` big-endian at out[off .. off + 4); returns TOKEN_KEY_BYTES. Allocation-free. */
export function writeTokenKey(token: number, out: Uint8Array, off = 0): number {
  out[off] = token >>> 24;
  out[off + 1] = (token >>> 16) & 0xff;
  out[off + 2] = (token >>> 8) & 0xff;
  out[off + 3] = token & 0xff;
  return TOKEN_KEY_BYTES;
}

/** A new 4-byte key for `token` (control-side work: once per learned token, never per packet). */
export function tokenKey(token: number): Uint8Array {
  const k = new Uint8Array(TOKEN_KEY_BYTES);
  writeTokenKey(token, k, 0);
  return k;
}
