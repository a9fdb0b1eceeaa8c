import { describe, expect, it } from 'vitest';
import {
  OUTER_IPV4_LEN,
  OUTER_IPV6_LEN,
  encapHeaderLen,
  writeEncap,
  writeIp4inIp6,
  writeIp6inIp4,
  writeIp6inIp6,
  writeIpipV4,
} from '../../src/packet/encap.js';
import { buildFrameDetailed, ipToBytes, type FrameSpec } from '../../src/packet/build.js';
import { parseFrame } from '../../src/packet/parse.js';
import { ParsedPacket } from '../../src/packet/parsed-packet.js';
import { Drop } from '../../src/packet/drop-reasons.js';
import { verifyIpv4HeaderChecksum } from '../../src/packet/checksum.js';

const LB4 = ipToBytes('192.0.2.1');
const BACKEND4 = ipToBytes('192.0.2.50');
const LB6 = ipToBytes('2001:db8:f::1');
const BACKEND6 = ipToBytes('2001:db8:f::50');

const INNER_V4: FrameSpec = {
  ipv4: { src: '10.99.1.2', dst: '198.51.100.10', ttl: 60 },
  tcp: { sport: 40000, dport: 80, flags: 0x02, options: Uint8Array.from([2, 4, 5, 0xb4]) },
};
const INNER_V6: FrameSpec = {
  ipv6: { src: '2001:db8:99::2', dst: '2001:db8:100::10', hopLimit: 60 },
  udp: { sport: 40000, dport: 53 },
  payload: 'a DNS query, more or less',
};

/** The inner IP packet of a built frame: everything after the Ethernet header. */
function innerPacket(spec: FrameSpec): Buffer {
  const b = buildFrameDetailed(spec);
  return b.frame.subarray(b.l3Offset);
}

interface Decapped {
  family: 4 | 6;
  protocol: number;
  ttl: number;
  src: Buffer;
  dst: Buffer;
  headerOk: boolean;
  inner: Buffer;
}

/**
 * Test-side decapsulation written from the RFCs, independent of encap.ts: read the outer
 * header at `off`, check its length fields and checksum, hand back the inner packet.
 */
function decap(pkt: Buffer, off: number): Decapped {
  const version = pkt[off] >> 4;
  if (version === 4) {
    const ihl = (pkt[off] & 0x0f) * 4;
    const total = pkt.readUInt16BE(off + 2);
    const flags = pkt.readUInt16BE(off + 6);
    return {
      family: 4,
      protocol: pkt[off + 9],
      ttl: pkt[off + 8],
      src: pkt.subarray(off + 12, off + 16),
      dst: pkt.subarray(off + 16, off + 20),
      headerOk: ihl === 20 && flags === 0x4000 && verifyIpv4HeaderChecksum(pkt, off, 20) && total === pkt.length - off,
      inner: pkt.subarray(off + ihl, off + total),
    };
  }
  const payloadLen = pkt.readUInt16BE(off + 4);
  return {
    family: 6,
    protocol: pkt[off + 6],
    ttl: pkt[off + 7],
    src: pkt.subarray(off + 8, off + 24),
    dst: pkt.subarray(off + 24, off + 40),
    headerOk: version === 6 && payloadLen === pkt.length - off - 40,
    inner: pkt.subarray(off + 40, off + 40 + payloadLen),
  };
}

/** Wraps an IP packet in an Ethernet header so parseFrame can read it. */
function asFrame(ip: Buffer): Buffer {
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(ip[0] >> 4 === 4 ? 0x0800 : 0x86dd, 12);
  return Buffer.concat([eth, ip]);
}

type Writer = (out: Uint8Array, off: number, inner: Buffer) => number;

const CASES: { name: string; inner: FrameSpec; family: 4 | 6; protocol: number; src: Uint8Array; dst: Uint8Array; write: Writer }[] = [
  {
    name: 'IPv4 in IPv4 (writeIpipV4)',
    inner: INNER_V4, family: 4, protocol: 4, src: LB4, dst: BACKEND4,
    write: (out, off, inner) => writeIpipV4(out, off, LB4, BACKEND4, inner.length, 64, 0xbeef),
  },
  {
    name: 'IPv6 in IPv4 (writeIp6inIp4)',
    inner: INNER_V6, family: 4, protocol: 41, src: LB4, dst: BACKEND4,
    write: (out, off, inner) => writeIp6inIp4(out, off, LB4, BACKEND4, inner.length, 64, 0xbeef),
  },
  {
    name: 'IPv6 in IPv6 (writeIp6inIp6)',
    inner: INNER_V6, family: 6, protocol: 41, src: LB6, dst: BACKEND6,
    write: (out, off, inner) => writeIp6inIp6(out, off, LB6, BACKEND6, inner.length, 64, 0xabcde),
  },
  {
    name: 'IPv4 in IPv6 (writeIp4inIp6)',
    inner: INNER_V4, family: 6, protocol: 4, src: LB6, dst: BACKEND6,
    write: (out, off, inner) => writeIp4inIp6(out, off, LB6, BACKEND6, inner.length, 64, 0xabcde),
  },
  {
    name: 'writeEncap picks IPv4 outer for a v4 backend, v6 inner',
    inner: INNER_V6, family: 4, protocol: 41, src: LB4, dst: BACKEND4,
    write: (out, off, inner) => writeEncap(out, off, LB4, BACKEND4, 6, inner.length, 64, 0xbeef),
  },
  {
    name: 'writeEncap picks IPv6 outer for a v6 backend, v4 inner',
    inner: INNER_V4, family: 6, protocol: 4, src: LB6, dst: BACKEND6,
    write: (out, off, inner) => writeEncap(out, off, LB6, BACKEND6, 4, inner.length, 64, 0xabcde),
  },
];

describe('IP-in-IP encapsulation', () => {
  it.each(CASES)('$name: outer fields, lengths and round trip', ({ inner: spec, family, protocol, src, dst, write }) => {
    const inner = innerPacket(spec);
    const hdrLen = family === 4 ? 20 : 40;
    // Write at a non-zero offset into a dirty buffer: every outer byte must be written.
    const off = 14;
    const out = Buffer.alloc(off + hdrLen + inner.length, 0xee);
    expect(write(out, off, inner)).toBe(hdrLen);
    expect(out.subarray(0, off).every((b) => b === 0xee)).toBe(true);
    inner.copy(out, off + hdrLen);

    const d = decap(out, off);
    expect(d.family).toBe(family);
    expect(d.protocol).toBe(protocol);
    expect(d.ttl).toBe(64);
    expect([...d.src]).toEqual([...src]);
    expect([...d.dst]).toEqual([...dst]);
    expect(d.headerOk).toBe(true);
    expect(d.inner.equals(inner)).toBe(true);
    if (family === 4) {
      expect(out.readUInt16BE(off + 4)).toBe(0xbeef);
      expect(out[off + 1]).toBe(0);
    } else {
      expect(out.readUInt32BE(off) & 0xfffff).toBe(0xabcde);
      expect((out.readUInt32BE(off) >>> 20) & 0xff).toBe(0);
    }

    // The inner packet parses exactly as it did before encapsulation.
    const before = new ParsedPacket();
    const after = new ParsedPacket();
    expect(parseFrame(asFrame(inner), inner.length + 14, before)).toBe(Drop.ok);
    const again = asFrame(d.inner);
    expect(parseFrame(again, again.length, after)).toBe(Drop.ok);
    expect(after).toEqual(before);
  });

  it.each([
    { name: 'v4 outer: buffer one byte short', write: () => writeIpipV4(new Uint8Array(19), 0, LB4, BACKEND4, 0, 64, 1) },
    { name: 'v4 outer: offset leaves 19 bytes', write: () => writeIpipV4(new Uint8Array(40), 21, LB4, BACKEND4, 0, 64, 1) },
    { name: 'v4 outer: total length 65536', write: () => writeIpipV4(new Uint8Array(20), 0, LB4, BACKEND4, 65516, 64, 1) },
    { name: 'v6 outer: buffer one byte short', write: () => writeIp6inIp6(new Uint8Array(39), 0, LB6, BACKEND6, 0, 64) },
    { name: 'v6 outer: payload 65536', write: () => writeIp4inIp6(new Uint8Array(40), 0, LB6, BACKEND6, 65536, 64) },
    { name: 'writeEncap: mixed address families', write: () => writeEncap(new Uint8Array(64), 0, LB4, BACKEND6, 4, 10, 64, 1) },
    { name: 'writeEncap: inner version 5', write: () => writeEncap(new Uint8Array(64), 0, LB4, BACKEND4, 5, 10, 64, 1) },
  ])('$name returns 0', ({ write }) => {
    expect(write()).toBe(0);
  });

  it.each([
    { name: 'largest v4 outer (65535 total)', write: () => writeIpipV4(new Uint8Array(20), 0, LB4, BACKEND4, 65515, 64, 1), want: 20 },
    { name: 'largest v6 payload (65535)', write: () => writeIp6inIp6(new Uint8Array(40), 0, LB6, BACKEND6, 65535, 64), want: 40 },
  ])('$name fits', ({ write, want }) => {
    expect(write()).toBe(want);
  });

  it.each([
    { name: 'IPv4 backend', len: 4, want: OUTER_IPV4_LEN },
    { name: 'IPv6 backend', len: 16, want: OUTER_IPV6_LEN },
  ])('encapHeaderLen for an $name', ({ len, want }) => {
    expect(encapHeaderLen(len)).toBe(want);
  });
});
