/**
 * MurmurHash3, x86 32-bit flavour, over bytes in place.
 *
 * The flow hash is murmur3 of the canonical 5-tuple key
 *   src addr (4|16) ++ dst addr (4|16) ++ src port (2, BE) ++ dst port (2, BE) ++ protocol (1)
 * = 13 bytes for IPv4, 37 for IPv6. flowHash() reads those bytes straight from the frame, with
 * no key copy: both address lengths are multiples of 4, so the address words are whole murmur
 * blocks, the two ports form one more block and the protocol is the 1-byte tail. The result is
 * bit-identical to murmurhash3js-revisited's x86.hash32 over the copied key (checked in tests),
 * so any other implementation (a native addon, a reference script) can reproduce it.
 */
import type { ParsedPacket } from '../packet/parsed-packet.js';

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** Size of the longest canonical flow key (IPv6): 16 + 16 + 2 + 2 + 1. */
export const FLOW_KEY_MAX_BYTES = 37;

/** One body round: mix the little-endian block k into h. Returns the new h as int32. */
function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** Tail round: mix a partial block (no rotate/multiply of h afterwards). */
function mixTail(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  return h ^ k;
}

/**
 * murmur3's finalizer (fmix32): a cheap, well-mixed 32-bit integer hash step on its own, also
 * used to hash a few words without a buffer (client-affinity keys). Unsigned result.
 */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Final avalanche over the hashed length; returns an unsigned 32-bit value. */
function fmix(h: number, len: number): number {
  return fmix32(h ^ len);
}

/** Little-endian 32-bit read (murmur3 reads its blocks little-endian). */
function readLE(b: Uint8Array, i: number): number {
  return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
}

/** MurmurHash3 x86_32 of bytes[off, off + len) with the given seed; unsigned result. */
export function murmur3_32(bytes: Uint8Array, off: number, len: number, seed: number): number {
  let h = seed | 0;
  const blocksEnd = off + (len & ~3);
  let i = off;
  for (; i < blocksEnd; i += 4) h = mixBlock(h, readLE(bytes, i));
  const rem = len & 3;
  if (rem !== 0) {
    let k = bytes[i];
    if (rem >= 2) k |= bytes[i + 1] << 8;
    if (rem === 3) k |= bytes[i + 2] << 16;
    h = mixTail(h, k);
  }
  return fmix(h, len);
}

/**
 * Flow hash of a parsed packet, computed from the frame in place (no allocation).
 * Equal to murmur3_32 over the canonical key (see copyFlowKey).
 */
export function flowHash(frame: Uint8Array, p: ParsedPacket, seed: number): number {
  return flowHashBits(frame, p, seed) >>> 0;
}

/**
 * flowHash's 32 bits as a signed integer: what the packet path carries. On x64 Node an
 * unsigned value of 2^31 or more is no small integer, so returning it, or passing it to a
 * function V8 did not inline, boxes it in a new HeapNumber: an allocation per frame for half
 * of all flows. Where the unsigned value counts (an index modulo a table length), use
 * (hash >>> 0) on the spot; masks (hash & m) and Uint32Array stores need nothing.
 */
export function flowHashBits(frame: Uint8Array, p: ParsedPacket, seed: number): number {
  let h = seed | 0;
  const addrLen = p.addrLen;
  const src = p.srcAddrOffset;
  const dst = p.dstAddrOffset;
  for (let i = 0; i < addrLen; i += 4) h = mixBlock(h, readLE(frame, src + i));
  for (let i = 0; i < addrLen; i += 4) h = mixBlock(h, readLE(frame, dst + i));
  const sp = p.srcPort;
  const dp = p.dstPort;
  // Key bytes sp_hi, sp_lo, dp_hi, dp_lo read as one little-endian block.
  h = mixBlock(h, ((sp >>> 8) & 0xff) | ((sp & 0xff) << 8) | (((dp >>> 8) & 0xff) << 16) | ((dp & 0xff) << 24));
  h = mixTail(h, p.protocol & 0xff);
  return fmix(h, addrLen + addrLen + 5) | 0;
}

/** Length of the canonical key for an address length (13 for 4, 37 for 16). */
export function flowKeyLength(addrLen: number): number {
  return addrLen + addrLen + 5;
}

/**
 * Write the canonical flow key of a parsed packet into out (at least 37 bytes).
 * Returns the key length. Not for the per-packet path (flowHash needs no copy); for
 * messages to peers, tests and tools.
 */
export function copyFlowKey(frame: Uint8Array, p: ParsedPacket, out: Uint8Array): number {
  const addrLen = p.addrLen;
  for (let i = 0; i < addrLen; i++) {
    out[i] = frame[p.srcAddrOffset + i];
    out[addrLen + i] = frame[p.dstAddrOffset + i];
  }
  const o = addrLen + addrLen;
  out[o] = (p.srcPort >>> 8) & 0xff;
  out[o + 1] = p.srcPort & 0xff;
  out[o + 2] = (p.dstPort >>> 8) & 0xff;
  out[o + 3] = p.dstPort & 0xff;
  out[o + 4] = p.protocol & 0xff;
  return o + 5;
}

/**
 * Flow hash over a canonical key buffer (as written by copyFlowKey), addrLen 4 or 16.
 * Equal to flowHash() of the packet the key came from.
 */
export function flowHashFromKey(key: Uint8Array, addrLen: number, seed: number): number {
  return murmur3_32(key, 0, addrLen + addrLen + 5, seed);
}

/**
 * murmur3_32 of the 8 bytes w0 (little-endian) ++ w1 (little-endian), without a buffer.
 * Used to score (key, instance) pairs for rendezvous hashing.
 */
export function murmur3Words2(w0: number, w1: number, seed: number): number {
  let h = seed | 0;
  h = mixBlock(h, w0 | 0);
  h = mixBlock(h, w1 | 0);
  return fmix(h, 8);
}
