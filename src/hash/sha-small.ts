/**
 * SHA-256 and SHA-1 of exactly 8 bytes read from a frame: the MPTCP key -> token / IDSN
 * derivation (RFC 8684 section 3.2, RFC 6824 section 3.1). An 8-byte message is one padded
 * 64-byte block (key, 0x80, zeros, bit length 64), so each digest is a single compression
 * over preallocated typed arrays: no allocation, no exceptions, integer math only.
 *
 * Precondition: frame[keyOff .. keyOff+7] exists (the option decoder guarantees it).
 * State is module-level and reused; the functions are not reentrant, which is fine on the
 * single-threaded data plane.
 */

const K256 = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const IV256 = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

const IV1 = new Int32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0]);

/** Message schedule, large enough for SHA-1's 80 words. */
const W = new Int32Array(80);
/** Digest words of the last compression (8 for SHA-256, 5 for SHA-1), signed int32. */
const D = new Int32Array(8);

/** Loads the padded block of the 8-byte message at frame[off] into W[0..15]. */
function loadBlock(frame: Uint8Array, off: number): void {
  W[0] = (frame[off] << 24) | (frame[off + 1] << 16) | (frame[off + 2] << 8) | frame[off + 3];
  W[1] = (frame[off + 4] << 24) | (frame[off + 5] << 16) | (frame[off + 6] << 8) | frame[off + 7];
  W[2] = 0x80000000 | 0;
  for (let i = 3; i < 15; i++) W[i] = 0;
  W[15] = 64; // message length in bits
}

function compress256(frame: Uint8Array, off: number): void {
  loadBlock(frame, off);
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15];
    const y = W[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = IV256[0];
  let b = IV256[1];
  let c = IV256[2];
  let d = IV256[3];
  let e = IV256[4];
  let f = IV256[5];
  let g = IV256[6];
  let h = IV256[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + S1 + ch + K256[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  D[0] = (a + IV256[0]) | 0;
  D[1] = (b + IV256[1]) | 0;
  D[2] = (c + IV256[2]) | 0;
  D[3] = (d + IV256[3]) | 0;
  D[4] = (e + IV256[4]) | 0;
  D[5] = (f + IV256[5]) | 0;
  D[6] = (g + IV256[6]) | 0;
  D[7] = (h + IV256[7]) | 0;
}

function compress1(frame: Uint8Array, off: number): void {
  loadBlock(frame, off);
  for (let i = 16; i < 80; i++) {
    const x = W[i - 3] ^ W[i - 8] ^ W[i - 14] ^ W[i - 16];
    W[i] = (x << 1) | (x >>> 31);
  }
  let a = IV1[0];
  let b = IV1[1];
  let c = IV1[2];
  let d = IV1[3];
  let e = IV1[4];
  for (let i = 0; i < 80; i++) {
    let fk: number;
    if (i < 20) fk = ((b & c) | (~b & d)) + 0x5a827999;
    else if (i < 40) fk = (b ^ c ^ d) + 0x6ed9eba1;
    else if (i < 60) fk = ((b & c) | (b & d) | (c & d)) + 0x8f1bbcdc;
    else fk = (b ^ c ^ d) + 0xca62c1d6;
    const t = (((a << 5) | (a >>> 27)) + fk + e + W[i]) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  D[0] = (a + IV1[0]) | 0;
  D[1] = (b + IV1[1]) | 0;
  D[2] = (c + IV1[2]) | 0;
  D[3] = (d + IV1[3]) | 0;
  D[4] = (e + IV1[4]) | 0;
}

/** Full SHA-256 digest of frame[keyOff..keyOff+7] as 8 big-endian words into out[0..7]. */
export function sha256Key8(frame: Uint8Array, keyOff: number, out: Uint32Array): void {
  compress256(frame, keyOff);
  for (let i = 0; i < 8; i++) out[i] = D[i];
}

/** Full SHA-1 digest of frame[keyOff..keyOff+7] as 5 big-endian words into out[0..4]. */
export function sha1Key8(frame: Uint8Array, keyOff: number, out: Uint32Array): void {
  compress1(frame, keyOff);
  for (let i = 0; i < 5; i++) out[i] = D[i];
}

/** v1 (RFC 8684): out[0] = token = H[0..3], out[1..2] = IDSN = H[24..31] (high, low). */
export function tokenAndIdsnV1(frame: Uint8Array, keyOff: number, out: Uint32Array): void {
  compress256(frame, keyOff);
  out[0] = D[0];
  out[1] = D[6];
  out[2] = D[7];
}

/** v0 (RFC 6824): out[0] = token = H[0..3], out[1..2] = IDSN = H[12..19] (high, low). */
export function tokenAndIdsnV0(frame: Uint8Array, keyOff: number, out: Uint32Array): void {
  compress1(frame, keyOff);
  out[0] = D[0];
  out[1] = D[3];
  out[2] = D[4];
}

/**
 * The 32-bit token of the key at frame[keyOff] for MPTCP `version` (1: SHA-256, 0: SHA-1),
 * as an unsigned number equal to the 4 token bytes read big-endian (as they appear in an
 * MP_JOIN SYN). Any version other than 0 uses SHA-256.
 */
export function mptcpToken(frame: Uint8Array, keyOff: number, version: number): number {
  if (version === 0) compress1(frame, keyOff);
  else compress256(frame, keyOff);
  return D[0] >>> 0;
}
