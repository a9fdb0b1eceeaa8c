import { describe, expect, it } from 'vitest';
import { parseFrame } from '../../src/packet/parse.js';
import { FRAG_FIRST, FRAG_LATER, FRAG_NONE, ParsedPacket } from '../../src/packet/parsed-packet.js';
import { DROP_REASONS, Drop } from '../../src/packet/drop-reasons.js';
import { buildFrame, buildFrameDetailed } from '../../src/packet/build.js';
import { formatAddress } from '../../src/packet/address.js';

const ipv6Text = (b: Uint8Array): string => formatAddress(b, 0, 16);
import { CLIENT4, CLIENT6, CLIENT_PORT, FRAGMENT_FRAMES, MALFORMED_FRAMES, UDP_PORT, VALID_FRAMES, VIP4, VIP6, type ExpectedParse } from '../fixtures/malformed-frames.js';

/** The reasons parseFrame may return: 'ok' through the first parse block, and the appended parse block. */
const PARSE_REASONS = new Set<string>([
  ...DROP_REASONS.slice(0, Drop.bad_tcp_options + 1),
  ...DROP_REASONS.slice(Drop.bad_ipv4_options, Drop.bad_icmp_quote + 1),
]);

function fields(p: ParsedPacket): ExpectedParse {
  return {
    vlanId: p.vlanId,
    l3Offset: p.l3Offset,
    ipVersion: p.ipVersion,
    l3Length: p.l3Length,
    srcAddrOffset: p.srcAddrOffset,
    dstAddrOffset: p.dstAddrOffset,
    addrLen: p.addrLen,
    protocol: p.protocol,
    ttl: p.ttl,
    l4Offset: p.l4Offset,
    srcPort: p.srcPort,
    dstPort: p.dstPort,
    tcpFlags: p.tcpFlags,
    tcpOptionsOffset: p.tcpOptionsOffset,
    tcpOptionsLen: p.tcpOptionsLen,
    payloadOffset: p.payloadOffset,
    payloadLen: p.payloadLen,
  };
}

/** mulberry32: a small seeded PRNG so a fuzz failure reproduces. */
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

describe('parseFrame: malformed frames', () => {
  it('has at least 24 named cases, each name unique', () => {
    expect(MALFORMED_FRAMES.length).toBeGreaterThanOrEqual(24);
    expect(new Set(MALFORMED_FRAMES.map((c) => c.name)).size).toBe(MALFORMED_FRAMES.length);
  });

  it.each(MALFORMED_FRAMES)('$name -> $reason', ({ frame, reason }) => {
    const p = new ParsedPacket();
    const got = parseFrame(frame, frame.length, p);
    expect(DROP_REASONS[got]).toBe(reason);
    expect(got).not.toBe(Drop.ok);
  });
});

describe('parseFrame: valid frames', () => {
  it.each(VALID_FRAMES)('$name', ({ frame, expect: want }) => {
    const p = new ParsedPacket();
    expect(DROP_REASONS[parseFrame(frame, frame.length, p)]).toBe('ok');
    expect(fields(p)).toEqual(want);
    expect(p.frameLen).toBe(frame.length);
  });

  it.each(VALID_FRAMES)('$name: addresses at the reported offsets', ({ frame }) => {
    const p = new ParsedPacket();
    parseFrame(frame, frame.length, p);
    const src = frame.subarray(p.srcAddrOffset, p.srcAddrOffset + p.addrLen);
    const dst = frame.subarray(p.dstAddrOffset, p.dstAddrOffset + p.addrLen);
    const text = (b: Buffer): string =>
      b.length === 4 ? [...b].join('.') : b.toString('hex').replace(/(.{4})(?!$)/g, '$1:');
    if (p.ipVersion === 4) {
      expect([text(src), text(dst)]).toEqual(['10.99.1.2', '198.51.100.10']);
    } else {
      expect([text(src), text(dst)]).toEqual([
        '2001:0db8:0099:0000:0000:0000:0000:0002',
        '2001:0db8:0100:0000:0000:0000:0000:0010',
      ]);
    }
  });
});

describe('parseFrame: stale state and length handling', () => {
  const tcp6 = VALID_FRAMES.find((f) => f.expect.ipVersion === 6 && f.expect.protocol === 6)!;
  const udp4 = VALID_FRAMES.find((f) => f.expect.ipVersion === 4 && f.expect.protocol === 17 && f.expect.vlanId === 0)!;
  const arp = MALFORMED_FRAMES.find((f) => f.reason === 'unsupported_ethertype' && f.name.startsWith('ARP'))!;

  it.each([
    { name: 'a TCP/IPv6 parse followed by UDP/IPv4 leaves no TCP fields', first: tcp6, second: udp4 },
    { name: 'a UDP/IPv4 parse followed by TCP/IPv6 gives the TCP/IPv6 fields', first: udp4, second: tcp6 },
  ])('$name', ({ first, second }) => {
    const p = new ParsedPacket();
    parseFrame(first.frame, first.frame.length, p);
    expect(parseFrame(second.frame, second.frame.length, p)).toBe(Drop.ok);
    expect(fields(p)).toEqual(second.expect);
  });

  it('a drop after a valid parse zeroes what the drop did not reach', () => {
    const p = new ParsedPacket();
    parseFrame(tcp6.frame, tcp6.frame.length, p);
    expect(parseFrame(arp.frame, arp.frame.length, p)).toBe(Drop.unsupported_ethertype);
    expect(fields(p)).toEqual({ ...fields(new ParsedPacket()), l3Offset: 14 });
  });

  it.each([
    { name: 'len beyond the buffer is clamped to the buffer', extra: 100, want: 'ok' },
    { name: 'negative len reads nothing', extra: -1_000_000, want: 'truncated_ethernet' },
    { name: 'NaN len reads nothing', extra: Number.NaN, want: 'truncated_ethernet' },
  ])('$name', ({ extra, want }) => {
    const p = new ParsedPacket();
    const got = parseFrame(udp4.frame, udp4.frame.length + extra, p);
    expect(DROP_REASONS[got]).toBe(want);
    if (want === 'ok') expect(fields(p)).toEqual(udp4.expect);
  });

  it.each(VALID_FRAMES)('$name: cut short of its IP packet is a drop; no read past len', ({ frame, expect: want }) => {
    const p = new ParsedPacket();
    const q = new ParsedPacket();
    for (let n = 0; n < frame.length; n++) {
      const exact = Buffer.from(frame.subarray(0, n));
      const got = parseFrame(exact, n, p);
      // Same bytes up to n, garbage after: the result must not change.
      const padded = Buffer.concat([exact, Buffer.alloc(64, 0xa5)]);
      expect(parseFrame(padded, n, q)).toBe(got);
      expect(fields(q)).toEqual(fields(p));
      // Only Ethernet padding may be cut away; any cut into the IP packet is a drop.
      expect(got === Drop.ok).toBe(n >= want.l3Offset + want.l3Length);
    }
  });
});

describe('parseFrame: fuzz', () => {
  const ITERATIONS = 20_000;

  it(`${ITERATIONS} random mutations and truncations never throw and return a parse reason`, () => {
    const rand = prng(0x5eed);
    const p = new ParsedPacket();
    const q = new ParsedPacket();
    const seen = new Set<string>();
    const bases = [
      ...VALID_FRAMES.map((f) => f.frame),
      // Also frames with headers the valid set lacks, so mutations reach more branches.
      buildFrameDetailed({
        ipv6: { src: '2001:db8::1', dst: '2001:db8::2', extensionHeaders: [{ type: 0 }] },
        udp: { sport: 1, dport: 2 },
      }).frame,
    ];
    for (let i = 0; i < ITERATIONS; i++) {
      const base = bases[Math.floor(rand() * bases.length)];
      const f = Buffer.from(base);
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) {
        const at = Math.floor(rand() * f.length);
        // Half of the time a targeted bit flip, half a random byte.
        f[at] = rand() < 0.5 ? f[at] ^ (1 << Math.floor(rand() * 8)) : Math.floor(rand() * 256);
      }
      const len = rand() < 0.3 ? Math.floor(rand() * (f.length + 1)) : f.length;
      let got = -1;
      expect(() => {
        got = parseFrame(f, len, p);
      }).not.toThrow();
      expect(Number.isInteger(got)).toBe(true);
      expect(PARSE_REASONS.has(DROP_REASONS[got])).toBe(true);
      seen.add(DROP_REASONS[got]);
      if (got === Drop.ok) {
        // A success never points outside what was captured.
        expect(p.payloadOffset + p.payloadLen).toBeLessThanOrEqual(len);
        expect(p.l3Offset + p.l3Length).toBeLessThanOrEqual(len);
        if (p.fragment === FRAG_LATER) {
          expect(p.l4Offset).toBe(0);
        } else {
          expect(p.l4Offset).toBeGreaterThanOrEqual(p.l3Offset + 20);
          expect([6, 17, 1, 58]).toContain(p.protocol);
        }
      }
      // Bytes past len must not matter.
      f.fill(0x5a, Math.min(len, f.length));
      expect(parseFrame(f, len, q)).toBe(got);
    }
    // The fuzz reached both success and many different drops, so it exercised the parser.
    expect(seen.has('ok')).toBe(true);
    expect(seen.size).toBeGreaterThanOrEqual(12);
  });
});

describe('parseFrame: fragments', () => {
  const payload = Buffer.alloc(40, 7);
  // A UDP datagram of 8 + 40 bytes cut after 24 bytes (3 units of 8): the first fragment.
  const whole4 = buildFrameDetailed({ ipv4: { src: CLIENT4, dst: VIP4, id: 0x4242 }, udp: { sport: CLIENT_PORT, dport: UDP_PORT }, payload });
  const udpBytes = whole4.frame.subarray(whole4.l4Offset);
  it.each([
    {
      name: 'IPv4 first fragment: ports read, UDP length describes the whole datagram',
      frame: buildFrame({ ipv4: { src: CLIENT4, dst: VIP4, id: 0x4242, flags: 0b001 }, raw: { protocol: 17, bytes: udpBytes.subarray(0, 24) } }),
      want: { fragment: FRAG_FIRST, fragOffset: 0, fragMore: 1, fragId: 0x4242, srcPort: CLIENT_PORT, dstPort: UDP_PORT, protocol: 17, payloadLen: 16 },
    },
    {
      name: 'IPv4 last fragment: no transport header, offset in bytes',
      frame: buildFrame({ ipv4: { src: CLIENT4, dst: VIP4, id: 0x4242, flags: 0, fragOffset: 3 }, raw: { protocol: 17, bytes: udpBytes.subarray(24) } }),
      want: { fragment: FRAG_LATER, fragOffset: 24, fragMore: 0, fragId: 0x4242, srcPort: 0, dstPort: 0, protocol: 17, payloadLen: 24 },
    },
    {
      name: 'IPv6 first fragment behind a destination options header',
      frame: buildFrame({
        ipv6: { src: CLIENT6, dst: VIP6, extensionHeaders: [{ type: 60 }, { type: 44, data: Uint8Array.from([0, 1, 0xde, 0xad, 0xbe, 0xef]) }] },
        raw: { protocol: 17, bytes: udpBytes.subarray(0, 24) },
      }),
      want: { fragment: FRAG_FIRST, fragOffset: 0, fragMore: 1, fragId: 0xdeadbeef, srcPort: CLIENT_PORT, dstPort: UDP_PORT, protocol: 17, payloadLen: 16 },
    },
    {
      name: 'IPv6 later fragment: the walk stops at the fragment header',
      frame: buildFrame({
        ipv6: { src: CLIENT6, dst: VIP6, extensionHeaders: [{ type: 44, data: Uint8Array.from([0, 24, 0, 0, 0, 9]) }] },
        raw: { protocol: 17, bytes: udpBytes.subarray(24) },
      }),
      want: { fragment: FRAG_LATER, fragOffset: 24, fragMore: 0, fragId: 9, srcPort: 0, dstPort: 0, protocol: 17, payloadLen: 24 },
    },
    {
      name: 'IPv6 atomic fragment (offset 0, no more) is a whole packet',
      frame: buildFrame({
        ipv6: { src: CLIENT6, dst: VIP6, extensionHeaders: [{ type: 44, data: Uint8Array.from([0, 0, 0, 0, 0, 5]) }] },
        udp: { sport: CLIENT_PORT, dport: UDP_PORT },
        payload,
      }),
      want: { fragment: FRAG_NONE, fragOffset: 0, fragMore: 0, fragId: 5, srcPort: CLIENT_PORT, dstPort: UDP_PORT, protocol: 17, payloadLen: 40 },
    },
  ])('$name', ({ frame, want }) => {
    const p = new ParsedPacket();
    expect(DROP_REASONS[parseFrame(frame, frame.length, p)]).toBe('ok');
    const { fragment, fragOffset, fragMore, fragId, srcPort, dstPort, protocol, payloadLen } = p;
    expect({ fragment, fragOffset, fragMore, fragId, srcPort, dstPort, protocol, payloadLen }).toEqual(want);
  });
});

describe('parseFrame: ICMP', () => {
  // What a backend sent from the VIP to the client, as a router on the way back quotes it.
  const reply4 = buildFrameDetailed({ ipv4: { src: VIP4, dst: CLIENT4 }, udp: { sport: UDP_PORT, dport: CLIENT_PORT }, payload: Buffer.alloc(100) });
  const reply6 = buildFrameDetailed({ ipv6: { src: VIP6, dst: CLIENT6 }, udp: { sport: UDP_PORT, dport: CLIENT_PORT }, payload: Buffer.alloc(100) });
  const quote4 = reply4.frame.subarray(reply4.l3Offset, reply4.l3Offset + 28);
  const quote6 = reply6.frame.subarray(reply6.l3Offset, reply6.l3Offset + 48);
  const icmp = (type: number, code: number, rest: number[], quote: Uint8Array): Uint8Array =>
    Uint8Array.from([type, code, 0, 0, ...rest, ...quote]);
  it.each([
    {
      name: 'IPv4 fragmentation needed quotes the reply: the inner tuple is the flow reversed',
      frame: buildFrame({ ipv4: { src: '10.99.0.1', dst: VIP4 }, raw: { protocol: 1, bytes: icmp(3, 4, [0, 0, 0x05, 0x00], quote4) } }),
      want: { icmpType: 3, icmpCode: 4, icmpId: 0, innerProtocol: 17, innerSrcPort: UDP_PORT, innerDstPort: CLIENT_PORT, inner: [VIP4, CLIENT4] },
    },
    {
      name: 'IPv4 time exceeded',
      frame: buildFrame({ ipv4: { src: '10.99.0.1', dst: VIP4 }, raw: { protocol: 1, bytes: icmp(11, 0, [0, 0, 0, 0], quote4) } }),
      want: { icmpType: 11, icmpCode: 0, icmpId: 0, innerProtocol: 17, innerSrcPort: UDP_PORT, innerDstPort: CLIENT_PORT, inner: [VIP4, CLIENT4] },
    },
    {
      name: 'ICMPv6 packet too big quotes the reply',
      frame: buildFrame({ ipv6: { src: '2001:db8::1', dst: VIP6 }, raw: { protocol: 58, bytes: icmp(2, 0, [0, 0, 0x05, 0x00], quote6) } }),
      want: { icmpType: 2, icmpCode: 0, icmpId: 0, innerProtocol: 17, innerSrcPort: UDP_PORT, innerDstPort: CLIENT_PORT, inner: [VIP6, CLIENT6] },
    },
    {
      name: 'IPv4 echo request: identifier read, nothing quoted',
      frame: buildFrame({ ipv4: { src: CLIENT4, dst: VIP4 }, raw: { protocol: 1, bytes: Uint8Array.from([8, 0, 0, 0, 0x12, 0x34, 0, 1]) } }),
      want: { icmpType: 8, icmpCode: 0, icmpId: 0x1234, innerProtocol: 0, innerSrcPort: 0, innerDstPort: 0, inner: null },
    },
    {
      name: 'ICMPv6 echo request',
      frame: buildFrame({ ipv6: { src: CLIENT6, dst: VIP6 }, raw: { protocol: 58, bytes: Uint8Array.from([128, 0, 0, 0, 0x56, 0x78, 0, 1]) } }),
      want: { icmpType: 128, icmpCode: 0, icmpId: 0x5678, innerProtocol: 0, innerSrcPort: 0, innerDstPort: 0, inner: null },
    },
  ])('$name', ({ frame, want }) => {
    const p = new ParsedPacket();
    expect(DROP_REASONS[parseFrame(frame, frame.length, p)]).toBe('ok');
    const text = (off: number, len: number): string =>
      len === 4 ? [...frame.subarray(off, off + 4)].join('.') : ipv6Text(frame.subarray(off, off + 16));
    const inner = p.innerL3Offset === 0 ? null : [text(p.innerSrcAddrOffset, p.addrLen), text(p.innerDstAddrOffset, p.addrLen)];
    const { icmpType, icmpCode, icmpId, innerProtocol, innerSrcPort, innerDstPort } = p;
    expect({ icmpType, icmpCode, icmpId, innerProtocol, innerSrcPort, innerDstPort, inner }).toEqual(want);
  });

  it.each(FRAGMENT_FRAMES)('$name parses (the forwarder decides what to do with it)', ({ frame }) => {
    expect(DROP_REASONS[parseFrame(frame, frame.length, new ParsedPacket())]).toBe('ok');
  });
});
