import { describe, expect, it } from 'vitest';
import {
  checksumUpdate16,
  checksumUpdate32,
  foldSum,
  internetChecksum,
  ipv4HeaderChecksum,
  sumWords,
  transportChecksum,
  verifyIpv4HeaderChecksum,
  verifyTransportChecksum,
  writeIpv4HeaderChecksum,
  writeTransportChecksum,
} from '../../src/packet/checksum.js';
import { buildFrameDetailed, type FrameSpec } from '../../src/packet/build.js';

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Reference checksum written the slow, obvious way (BigInt-free, but word by word with a
 * fold after every add), to check the library against something that shares no code with it.
 */
function referenceChecksum(bytes: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    const word = (bytes[i] << 8) | (i + 1 < bytes.length ? bytes[i + 1] : 0);
    s += word;
    if (s > 0xffff) s = (s & 0xffff) + 1;
  }
  return ~s & 0xffff;
}

/** Reference TCP/UDP checksum: pseudo-header bytes concatenated with the segment. */
function referenceTransport(src: Uint8Array, dst: Uint8Array, protocol: number, segment: Uint8Array): number {
  const pseudo =
    src.length === 4
      ? Buffer.concat([src, dst, Buffer.from([0, protocol]), Buffer.from([segment.length >> 8, segment.length & 0xff])])
      : Buffer.concat([
          src,
          dst,
          Buffer.from([0, 0, segment.length >> 8, segment.length & 0xff]),
          Buffer.from([0, 0, 0, protocol]),
        ]);
  const seg = Buffer.from(segment);
  seg.writeUInt16BE(0, protocol === 17 ? 6 : 16);
  return referenceChecksum(Buffer.concat([pseudo, seg]));
}

describe('internet checksum: known vectors', () => {
  it.each([
    {
      // RFC 1071 section 3: 0001 + f203 + f4f5 + f6f7 = 0x2ddf0, folded 0xddf2, complement 0x220d.
      name: 'RFC 1071 example bytes',
      bytes: '0001f203f4f5f6f7',
      checksum: 0x220d,
    },
    {
      // Odd length: the last byte is padded with a zero byte: 0x0102 + 0x0300 = 0x0402 -> 0xfbfd.
      name: 'odd length pads the last byte',
      bytes: '010203',
      checksum: 0xfbfd,
    },
    { name: 'all zero bytes give 0xffff', bytes: '00000000', checksum: 0xffff },
    { name: 'all 0xff bytes give 0x0000', bytes: 'ffffffff', checksum: 0x0000 },
  ])('$name', ({ bytes, checksum }) => {
    const b = Buffer.from(bytes, 'hex');
    expect(internetChecksum(b, 0, b.length)).toBe(checksum);
    expect(referenceChecksum(b)).toBe(checksum);
  });

  it('sums a range inside a larger buffer without touching its neighbours', () => {
    const b = Buffer.from('ffff0001f203f4f5f6f7ffff', 'hex');
    expect(internetChecksum(b, 2, 8)).toBe(0x220d);
  });

  it.each([
    { name: 'fold of 0x2ddf0', sum: 0x2ddf0, folded: 0xddf2 },
    { name: 'fold with a second carry (0x1fffe -> 0xffff)', sum: 0x1fffe, folded: 0xffff },
    { name: 'fold of a sum past 2^32', sum: 0x1_0000_0001 * 3, folded: foldRef(0x1_0000_0001 * 3) },
  ])('$name', ({ sum, folded }) => {
    expect(foldSum(sum)).toBe(folded);
  });
});

/** One's-complement fold by arithmetic: the representative of sum mod 0xffff in 1..0xffff. */
function foldRef(sum: number): number {
  const r = sum % 0xffff;
  return r === 0 ? 0xffff : r;
}

describe('IPv4 header checksum', () => {
  it.each([
    {
      // 45 00 003c 1234 4000 40 06 [csum] 0a630102 c633640a: 10.99.1.2 -> 198.51.100.10, TCP, 60 bytes.
      // 4500+003c+1234+4000+4006+0a63+0102+c633+640a = 0x20d18; fold 0x0d18+0x2 = 0x0d1a;
      // complement 0xf2e5.
      name: 'hand-computed header 10.99.1.2 -> 198.51.100.10',
      header: '4500003c123440004006' + 'f2e5' + '0a630102c633640a',
      checksum: 0xf2e5,
    },
    {
      // 4500+0073+0000+4000+4011+c0a8+0001+c0a8+00c7 = 0x2479c; fold 0x479c+0x2 = 0x479e;
      // complement 0xb861.
      name: 'hand-computed header 192.168.0.1 -> 192.168.0.199, UDP',
      header: '45000073000040004011' + 'b861' + 'c0a80001c0a800c7',
      checksum: 0xb861,
    },
  ])('$name', ({ header, checksum }) => {
    const h = Buffer.from(header, 'hex');
    expect(ipv4HeaderChecksum(h, 0, 20)).toBe(checksum);
    expect(verifyIpv4HeaderChecksum(h, 0, 20)).toBe(true);
    const zeroed = Buffer.from(h);
    zeroed.writeUInt16BE(0, 10);
    writeIpv4HeaderChecksum(zeroed, 0);
    expect(zeroed.readUInt16BE(10)).toBe(checksum);
    h[19] ^= 0x10;
    expect(verifyIpv4HeaderChecksum(h, 0, 20)).toBe(false);
  });

  it('covers the options of a 24-byte header', () => {
    const h = Buffer.from('46000040000040000106' + '0000' + '0a630102c633640a' + '94040000', 'hex');
    writeIpv4HeaderChecksum(h, 0);
    expect(h.readUInt16BE(10)).toBe(referenceChecksum(Buffer.concat([h.subarray(0, 10), h.subarray(12)])));
    expect(verifyIpv4HeaderChecksum(h, 0, 24)).toBe(true);
    h[22] ^= 1;
    expect(verifyIpv4HeaderChecksum(h, 0, 24)).toBe(false);
  });
});

describe('TCP/UDP checksum with pseudo-header', () => {
  const cases: { name: string; spec: FrameSpec }[] = [
    {
      name: 'TCP over IPv4, even payload',
      spec: { ipv4: { src: '10.99.1.2', dst: '198.51.100.10' }, tcp: { sport: 40000, dport: 80, seq: 7 }, payload: 'abcd' },
    },
    {
      name: 'TCP over IPv4, odd payload',
      spec: { ipv4: { src: '10.99.1.2', dst: '198.51.100.10' }, tcp: { sport: 40000, dport: 80 }, payload: 'abc' },
    },
    {
      name: 'UDP over IPv4',
      spec: { ipv4: { src: '10.99.1.2', dst: '198.51.100.10' }, udp: { sport: 40000, dport: 53 }, payload: 'query' },
    },
    {
      name: 'TCP over IPv6 with options',
      spec: {
        ipv6: { src: '2001:db8:99::2', dst: '2001:db8:100::10' },
        tcp: { sport: 40000, dport: 80, options: Uint8Array.from([2, 4, 5, 0xb4]) },
        payload: 'hello',
      },
    },
    {
      name: 'UDP over IPv6',
      spec: { ipv6: { src: '2001:db8:99::2', dst: '2001:db8:100::10' }, udp: { sport: 40000, dport: 53 }, payload: 'q' },
    },
  ];

  it.each(cases)('$name: matches the reference and verifies', ({ spec }) => {
    const b = buildFrameDetailed(spec);
    const f = b.frame;
    const v4 = spec.ipv4 !== undefined;
    const addrLen = v4 ? 4 : 16;
    const srcOff = b.l3Offset + (v4 ? 12 : 8);
    const dstOff = srcOff + addrLen;
    const protocol = spec.tcp ? 6 : 17;
    const l4Len = f.length - b.l4Offset;
    const segment = f.subarray(b.l4Offset);
    const want = referenceTransport(f.subarray(srcOff, srcOff + addrLen), f.subarray(dstOff, dstOff + addrLen), protocol, segment);
    expect(transportChecksum(f, srcOff, dstOff, addrLen, protocol, b.l4Offset, l4Len)).toBe(want);
    expect(segment.readUInt16BE(protocol === 6 ? 16 : 6)).toBe(want === 0 && protocol === 17 ? 0xffff : want);
    expect(verifyTransportChecksum(f, srcOff, dstOff, addrLen, protocol, b.l4Offset, l4Len)).toBe(true);
    // Corrupt one payload byte, then one address byte: both must fail.
    f[f.length - 1] ^= 0x01;
    expect(verifyTransportChecksum(f, srcOff, dstOff, addrLen, protocol, b.l4Offset, l4Len)).toBe(false);
    f[f.length - 1] ^= 0x01;
    f[dstOff] ^= 0x80;
    expect(verifyTransportChecksum(f, srcOff, dstOff, addrLen, protocol, b.l4Offset, l4Len)).toBe(false);
    f[dstOff] ^= 0x80;
    // Rewriting from scratch gives the same bytes.
    const before = Buffer.from(f);
    segment.writeUInt16BE(0x1234, protocol === 6 ? 16 : 6);
    writeTransportChecksum(f, srcOff, dstOff, addrLen, protocol, b.l4Offset, l4Len);
    expect(f.equals(before)).toBe(true);
  });

  it.each([
    { name: 'UDP checksum 0 over IPv4 means none and passes', v6: false, want: true },
    { name: 'UDP checksum 0 over IPv6 is invalid', v6: true, want: false },
  ])('$name', ({ v6, want }) => {
    const b = buildFrameDetailed(
      v6
        ? { ipv6: { src: '2001:db8::1', dst: '2001:db8::2' }, udp: { sport: 1, dport: 2, checksum: 0 } }
        : { ipv4: { src: '10.0.0.1', dst: '10.0.0.2' }, udp: { sport: 1, dport: 2, checksum: 0 } },
    );
    const srcOff = b.l3Offset + (v6 ? 8 : 12);
    const addrLen = v6 ? 16 : 4;
    expect(verifyTransportChecksum(b.frame, srcOff, srcOff + addrLen, addrLen, 17, b.l4Offset, 8)).toBe(want);
  });
});

describe('RFC 1624 incremental update', () => {
  const RANDOM_CHANGES = 1000;

  it.each([
    { name: '0x0000 -> 0xffff', oldWord: 0x0000, newWord: 0xffff },
    { name: '0xffff -> 0x0000', oldWord: 0xffff, newWord: 0x0000 },
    { name: 'no change', oldWord: 0x1234, newWord: 0x1234 },
    { name: 'one bit', oldWord: 0x8000, newWord: 0x8001 },
  ])('16-bit edge case $name equals recomputation', ({ oldWord, newWord }) => {
    // At every word position of a 20-byte header but the checksum's own.
    for (let pos = 0; pos < 20; pos += 2) {
      if (pos === 10) continue;
      const h = Buffer.from('4500003c123440004006' + '0000' + '0a630102c633640a', 'hex');
      h.writeUInt16BE(oldWord, pos);
      h.writeUInt16BE(ipv4HeaderChecksum(h, 0, 20), 10);
      const updated = checksumUpdate16(h.readUInt16BE(10), oldWord, newWord);
      h.writeUInt16BE(newWord, pos);
      expect(updated).toBe(ipv4HeaderChecksum(h, 0, 20));
    }
  });

  it.each([
    { name: 'identification word', pos: 4 },
    { name: 'TTL/protocol word', pos: 8 },
    { name: 'low half of the source address', pos: 14 },
  ])('a change of the $name that makes the checksum 0x0000 yields 0x0000, not 0xffff', ({ pos }) => {
    const h = Buffer.from('4500003c123440004006' + '0000' + '0a630102c633640a', 'hex');
    const before = ipv4HeaderChecksum(h, 0, 20);
    h.writeUInt16BE(before, 10);
    // Adding the old checksum C to one word makes the covered sum ~C + C = 0xffff: checksum 0.
    const oldWord = h.readUInt16BE(pos);
    let newWord = oldWord + before;
    if (newWord > 0xffff) newWord = (newWord & 0xffff) + 1;
    h.writeUInt16BE(newWord, pos);
    expect(ipv4HeaderChecksum(h, 0, 20)).toBe(0x0000);
    expect(checksumUpdate16(before, oldWord, newWord)).toBe(0x0000);
  });

  it.each([
    { name: 'IPv4 header, random 16-bit word', kind: 'ip16' },
    { name: 'IPv4 header, random address (32-bit)', kind: 'ip32' },
    { name: 'TCP segment, random port (16-bit)', kind: 'tcp16' },
    { name: 'TCP pseudo-header, random destination address (32-bit)', kind: 'tcpaddr' },
  ] as const)(`$name: ${RANDOM_CHANGES} changes equal full recomputation`, ({ kind }) => {
    const rand = prng(kind.length * 7919);
    const r16 = (): number => Math.floor(rand() * 0x10000);
    const r32 = (): number => Math.floor(rand() * 0x100000000);
    const b = buildFrameDetailed({
      ipv4: { src: '10.99.1.2', dst: '198.51.100.10', id: 0x4321 },
      tcp: { sport: 40000, dport: 80, seq: 123456, flags: 0x18 },
      payload: 'some bytes',
    });
    const f = b.frame;
    const l3 = b.l3Offset;
    const l4 = b.l4Offset;
    const l4Len = f.length - l4;
    for (let i = 0; i < RANDOM_CHANGES; i++) {
      if (kind === 'ip16') {
        // Any word but the checksum itself (index 5).
        const pos = l3 + [0, 1, 2, 3, 4, 6, 7, 8, 9][Math.floor(rand() * 9)] * 2;
        const oldW = f.readUInt16BE(pos);
        const newW = r16();
        const upd = checksumUpdate16(f.readUInt16BE(l3 + 10), oldW, newW);
        f.writeUInt16BE(newW, pos);
        expect(upd).toBe(ipv4HeaderChecksum(f, l3, 20));
        f.writeUInt16BE(upd, l3 + 10);
      } else if (kind === 'ip32') {
        const pos = l3 + (rand() < 0.5 ? 12 : 16);
        const oldV = f.readUInt32BE(pos);
        const newV = r32();
        const upd = checksumUpdate32(f.readUInt16BE(l3 + 10), oldV, newV);
        f.writeUInt32BE(newV, pos);
        expect(upd).toBe(ipv4HeaderChecksum(f, l3, 20));
        f.writeUInt16BE(upd, l3 + 10);
      } else if (kind === 'tcp16') {
        const pos = l4 + (rand() < 0.5 ? 0 : 2);
        const oldW = f.readUInt16BE(pos);
        const newW = r16();
        const upd = checksumUpdate16(f.readUInt16BE(l4 + 16), oldW, newW);
        f.writeUInt16BE(newW, pos);
        expect(upd).toBe(transportChecksum(f, l3 + 12, l3 + 16, 4, 6, l4, l4Len));
        f.writeUInt16BE(upd, l4 + 16);
      } else {
        const pos = l3 + 16;
        const oldV = f.readUInt32BE(pos);
        const newV = r32();
        const upd = checksumUpdate32(f.readUInt16BE(l4 + 16), oldV, newV);
        f.writeUInt32BE(newV, pos);
        expect(upd).toBe(transportChecksum(f, l3 + 12, l3 + 16, 4, 6, l4, l4Len));
        f.writeUInt16BE(upd, l4 + 16);
      }
    }
    // The chain of updates still verifies at the end.
    if (kind === 'ip16' || kind === 'ip32') expect(verifyIpv4HeaderChecksum(f, l3, 20)).toBe(true);
    else expect(verifyTransportChecksum(f, l3 + 12, l3 + 16, 4, 6, l4, l4Len)).toBe(true);
  });

  it('sumWords chains ranges like one range', () => {
    const b = Buffer.from('0001f203f4f5f6f7', 'hex');
    expect(sumWords(b, 4, 4, sumWords(b, 0, 4, 0))).toBe(sumWords(b, 0, 8, 0));
  });
});
