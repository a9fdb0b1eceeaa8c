import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { copyFlowKey, flowHash, flowHashFromKey, flowKeyLength, murmur3_32 } from '../../src/hash/murmur3.js';
import { ParsedPacket } from '../../src/packet/parsed-packet.js';
import { xorshift32 as rng } from '../fixtures/random.js';

interface MurmurReference {
  x86: { hash32(bytes: Uint8Array | number[], seed?: number): number };
}
const reference = createRequire(import.meta.url)('murmurhash3js-revisited') as MurmurReference;

function randomBytes(next: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = next() & 0xff;
  return b;
}

const ascii = (s: string): Uint8Array => new Uint8Array(Array.from(s, (c) => c.charCodeAt(0)));

describe('murmur3_32', () => {
  // Published MurmurHash3_x86_32 vectors (SMHasher reference outputs), also checked against the library.
  const published: { name: string; bytes: Uint8Array; seed: number; expected: number }[] = [
    { name: 'empty, seed 0', bytes: new Uint8Array(0), seed: 0, expected: 0 },
    { name: 'empty, seed 1', bytes: new Uint8Array(0), seed: 1, expected: 0x514e28b7 },
    { name: 'empty, seed 0xffffffff', bytes: new Uint8Array(0), seed: 0xffffffff, expected: 0x81f16f39 },
    { name: 'ff ff ff ff, seed 0', bytes: new Uint8Array([0xff, 0xff, 0xff, 0xff]), seed: 0, expected: 0x76293b50 },
    { name: '21 43 65 87, seed 0', bytes: new Uint8Array([0x21, 0x43, 0x65, 0x87]), seed: 0, expected: 0xf55b516b },
    { name: '"Hello, world!", seed 0x9747b28c', bytes: ascii('Hello, world!'), seed: 0x9747b28c, expected: 0x24884cba },
    {
      name: '"The quick brown fox jumps over the lazy dog", seed 0x9747b28c',
      bytes: ascii('The quick brown fox jumps over the lazy dog'),
      seed: 0x9747b28c,
      expected: 0x2fa826cd,
    },
  ];
  it.each(published)('published vector: $name', ({ bytes, seed, expected }) => {
    expect(murmur3_32(bytes, 0, bytes.length, seed)).toBe(expected);
    expect(reference.x86.hash32(bytes, seed)).toBe(expected);
  });

  const lengths = Array.from({ length: 41 }, (_, len) => ({ len }));
  it.each(lengths)('length $len at offsets 0..5 and 20 random seeds equals the reference', ({ len }) => {
    const next = rng(0x1000 + len);
    for (let trial = 0; trial < 20; trial++) {
      const seed = next();
      const key = randomBytes(next, len);
      const expected = reference.x86.hash32(key, seed);
      for (let off = 0; off <= 5; off++) {
        // Embed the key at an offset between random bytes: only [off, off+len) may count.
        const buf = randomBytes(next, off + len + 7);
        buf.set(key, off);
        expect(murmur3_32(buf, off, len, seed)).toBe(expected);
      }
    }
  });

  it('returns an unsigned 32-bit integer', () => {
    const next = rng(7);
    let sawHighBit = false;
    for (let i = 0; i < 256; i++) {
      const b = randomBytes(next, 9);
      const h = murmur3_32(b, 0, b.length, next());
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
      if (h >= 0x80000000) sawHighBit = true;
    }
    expect(sawHighBit).toBe(true);
  });
});

interface FrameCase {
  name: string;
  ipVersion: 4 | 6;
  addrLen: 4 | 16;
  protocolOf: (next: () => number) => number;
}

/** Build a frame with the addresses at an IP-like position and random surrounding bytes. */
function randomPacket(next: () => number, c: FrameCase): { frame: Uint8Array; p: ParsedPacket } {
  const frame = randomBytes(next, 128);
  const p = new ParsedPacket();
  p.ipVersion = c.ipVersion;
  p.addrLen = c.addrLen;
  p.l3Offset = 14 + (next() & 1) * 4; // optional VLAN tag shifts everything by 4
  p.srcAddrOffset = p.l3Offset + (c.ipVersion === 4 ? 12 : 8);
  p.dstAddrOffset = p.srcAddrOffset + c.addrLen;
  p.srcPort = next() & 0xffff;
  p.dstPort = next() & 0xffff;
  p.protocol = c.protocolOf(next);
  return { frame, p };
}

const families: FrameCase[] = [
  { name: 'IPv4 TCP/UDP', ipVersion: 4, addrLen: 4, protocolOf: (n) => ((n() & 1) === 0 ? 6 : 17) },
  { name: 'IPv4 any protocol', ipVersion: 4, addrLen: 4, protocolOf: (n) => n() & 0xff },
  { name: 'IPv6 TCP/UDP', ipVersion: 6, addrLen: 16, protocolOf: (n) => ((n() & 1) === 0 ? 6 : 17) },
  { name: 'IPv6 any protocol', ipVersion: 6, addrLen: 16, protocolOf: (n) => n() & 0xff },
];

describe('flowHash', () => {
  it.each(families)('$name: 1000 random keys and seeds equal the reference over the copied key', (c) => {
    const next = rng(c.addrLen * 1000 + c.ipVersion + (c.name.length << 8));
    const key = new Uint8Array(37);
    for (let i = 0; i < 1000; i++) {
      const { frame, p } = randomPacket(next, c);
      const seed = next();
      const len = copyFlowKey(frame, p, key);
      expect(len).toBe(flowKeyLength(c.addrLen));
      expect(len).toBe(c.addrLen === 4 ? 13 : 37);
      const copied = Array.from(key.subarray(0, len));
      const expected = reference.x86.hash32(copied, seed);
      expect(flowHash(frame, p, seed)).toBe(expected);
      expect(flowHashFromKey(key, c.addrLen, seed)).toBe(expected);
    }
  });

  it.each(families)('$name: canonical key layout is src ++ dst ++ sport BE ++ dport BE ++ protocol', (c) => {
    const next = rng(99 + c.addrLen);
    const { frame, p } = randomPacket(next, c);
    const key = new Uint8Array(37);
    const len = copyFlowKey(frame, p, key);
    const a = c.addrLen;
    expect(Array.from(key.subarray(0, a))).toEqual(Array.from(frame.subarray(p.srcAddrOffset, p.srcAddrOffset + a)));
    expect(Array.from(key.subarray(a, 2 * a))).toEqual(Array.from(frame.subarray(p.dstAddrOffset, p.dstAddrOffset + a)));
    expect((key[2 * a] << 8) | key[2 * a + 1]).toBe(p.srcPort);
    expect((key[2 * a + 2] << 8) | key[2 * a + 3]).toBe(p.dstPort);
    expect(key[2 * a + 4]).toBe(p.protocol);
    expect(len).toBe(2 * a + 5);
  });

  it.each(families)('$name: bytes outside the key do not change the hash', (c) => {
    const next = rng(4242 + c.addrLen);
    for (let i = 0; i < 100; i++) {
      const { frame, p } = randomPacket(next, c);
      const seed = next();
      const before = flowHash(frame, p, seed);
      for (let j = 0; j < frame.length; j++) {
        const inSrc = j >= p.srcAddrOffset && j < p.srcAddrOffset + p.addrLen;
        const inDst = j >= p.dstAddrOffset && j < p.dstAddrOffset + p.addrLen;
        if (!inSrc && !inDst) frame[j] ^= 0x5a;
      }
      expect(flowHash(frame, p, seed)).toBe(before);
    }
  });

  it.each(families)('$name: changing any single key field changes the hash (1000 keys)', (c) => {
    const next = rng(777 + c.addrLen);
    let unchanged = 0;
    for (let i = 0; i < 1000; i++) {
      const { frame, p } = randomPacket(next, c);
      const seed = next();
      const h = flowHash(frame, p, seed);
      const tweaks = [
        () => (frame[p.srcAddrOffset + (next() % p.addrLen)] ^= 1 << (next() & 7)),
        () => (frame[p.dstAddrOffset + (next() % p.addrLen)] ^= 1 << (next() & 7)),
        () => (p.srcPort ^= 1 << (next() & 15)),
        () => (p.dstPort ^= 1 << (next() & 15)),
        () => (p.protocol ^= 1 << (next() & 7)),
      ];
      tweaks[i % tweaks.length]();
      if (flowHash(frame, p, seed) === h) unchanged++;
    }
    // A 32-bit hash collides with probability 2^-32 per pair: zero expected in 1000.
    expect(unchanged).toBe(0);
  });
});
