import { describe, expect, it } from 'vitest';
import { parseFrame } from '../../src/packet/parse.js';
import { ParsedPacket } from '../../src/packet/parsed-packet.js';
import { DROP_REASONS, Drop } from '../../src/packet/drop-reasons.js';
import { buildFrameDetailed } from '../../src/packet/build.js';
import { MALFORMED_FRAMES, VALID_FRAMES, type ExpectedParse } from '../fixtures/malformed-frames.js';

/** The reasons parseFrame may return: 'ok' through the last parse reason. */
const PARSE_REASONS = DROP_REASONS.slice(0, Drop.bad_tcp_options + 1);

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
      expect(got >= 0 && got < PARSE_REASONS.length).toBe(true);
      seen.add(DROP_REASONS[got]);
      if (got === Drop.ok) {
        // A success never points outside what was captured.
        expect(p.payloadOffset + p.payloadLen).toBeLessThanOrEqual(len);
        expect(p.l3Offset + p.l3Length).toBeLessThanOrEqual(len);
        expect(p.l4Offset).toBeGreaterThanOrEqual(p.l3Offset + 20);
        expect([6, 17]).toContain(p.protocol);
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
