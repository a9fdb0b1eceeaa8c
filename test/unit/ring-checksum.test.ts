// completePartialChecksum: what the ring engine does to a frame the kernel marked
// TP_STATUS_CSUMNOTREADY. Each case builds the frame with a complete checksum (buildFrame, an
// independent writer), turns it into what an offloading sender's kernel hands the device (the
// checksum field holds only the folded pseudo-header sum), completes it, and expects the exact
// bytes of the complete frame back.
import { describe, expect, it } from 'vitest';
import { buildFrameDetailed, type FrameSpec } from '../../src/packet/build.js';
import { completePartialChecksum, foldSum, pseudoHeaderSum } from '../../src/packet/checksum.js';

const payload = 'GET / HTTP/1.1\r\nHost: vip\r\n\r\n';
const cases: { name: string; spec: FrameSpec }[] = [
  { name: 'TCP over IPv4', spec: { ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, tcp: { sport: 40000, dport: 80, seq: 1, flags: 0x18 }, payload } },
  { name: 'UDP over IPv4', spec: { ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, udp: { sport: 40001, dport: 53 }, payload: 'query' } },
  { name: 'TCP over IPv6', spec: { ipv6: { src: 'fd00:99:1::2', dst: 'fd00:99:2::10' }, tcp: { sport: 40002, dport: 80, flags: 0x18 }, payload } },
  { name: 'UDP over IPv6, odd length', spec: { ipv6: { src: 'fd00:99:1::2', dst: 'fd00:99:2::10' }, udp: { sport: 40003, dport: 53 }, payload: 'odd' } },
  { name: 'TCP over IPv4 in an 802.1Q tag', spec: { vlan: { id: 100 }, ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, tcp: { sport: 40004, dport: 80 }, payload } },
];

function partialOf(full: Buffer, l3: number, l4: number, v4: boolean, proto: number): { frame: Buffer; csumOffset: number } {
  const frame = Buffer.from(full);
  const csumOffset = proto === 6 ? 16 : 6;
  const addrLen = v4 ? 4 : 16;
  const src = v4 ? l3 + 12 : l3 + 8;
  const pseudo = foldSum(pseudoHeaderSum(frame, src, src + addrLen, addrLen, proto, frame.length - l4));
  frame.writeUInt16BE(pseudo, l4 + csumOffset);
  return { frame, csumOffset };
}

describe('completePartialChecksum (ring engine, TP_STATUS_CSUMNOTREADY)', () => {
  for (const c of cases) {
    it(`${c.name}: the partial frame completes to the exact bytes of the complete one`, () => {
      const built = buildFrameDetailed(c.spec);
      const proto = c.spec.tcp ? 6 : 17;
      const { frame, csumOffset } = partialOf(built.frame, built.l3Offset, built.l4Offset, c.spec.ipv4 !== undefined, proto);
      expect(frame.equals(built.frame)).toBe(false); // the partial frame really is wrong on the wire
      expect(completePartialChecksum(frame, 0, frame.length, built.l4Offset, csumOffset)).toBe(true);
      expect(frame.toString('hex')).toBe(built.frame.toString('hex'));
    });
  }

  it('works on a frame inside a bigger buffer (offset), touching nothing outside it', () => {
    const built = buildFrameDetailed(cases[0].spec);
    const { frame } = partialOf(built.frame, built.l3Offset, built.l4Offset, true, 6);
    const area = Buffer.alloc(frame.length + 100, 0xee);
    frame.copy(area, 50);
    expect(completePartialChecksum(area, 50, frame.length, built.l4Offset, 16)).toBe(true);
    expect(area.subarray(50, 50 + frame.length).toString('hex')).toBe(built.frame.toString('hex'));
    expect(area.subarray(0, 50).every((b) => b === 0xee) && area.subarray(50 + frame.length).every((b) => b === 0xee)).toBe(true);
  });

  const bad: { name: string; start: number; offset: number }[] = [
    { name: 'checksum field past the end', start: 60, offset: 16 },
    { name: 'start past the end', start: 5000, offset: 0 },
    { name: 'negative start', start: -2, offset: 16 },
  ];
  for (const b of bad) {
    it(`offsets that do not fit (${b.name}): false, frame untouched`, () => {
      const built = buildFrameDetailed({ ipv4: { src: '10.0.0.1', dst: '10.0.0.2' }, tcp: { sport: 1, dport: 2 } });
      const before = built.frame.toString('hex');
      expect(completePartialChecksum(built.frame, 0, built.frame.length, b.start, b.offset)).toBe(false);
      expect(built.frame.toString('hex')).toBe(before);
    });
  }

  it('writes 0xffff where the sum folds to 0 (as the kernel does), never 0', () => {
    // UDP over IPv4 whose checksum computes to 0: pick the payload word that makes the sum 0xffff.
    const spec = (word: number): FrameSpec => ({ ipv4: { src: '10.0.0.1', dst: '10.0.0.2' }, udp: { sport: 1, dport: 2, checksum: 0 }, payload: Buffer.from([word >>> 8, word & 0xff]) });
    const probe = buildFrameDetailed(spec(0));
    const base = foldSum(pseudoHeaderSum(probe.frame, 26, 30, 4, 17, 10) + 1 + 2 + 10);
    const word = 0xffff - base;
    const built = buildFrameDetailed(spec(word));
    const frame = Buffer.from(built.frame);
    frame.writeUInt16BE(foldSum(pseudoHeaderSum(frame, 26, 30, 4, 17, 10)), built.l4Offset + 6);
    expect(completePartialChecksum(frame, 0, frame.length, built.l4Offset, 6)).toBe(true);
    expect(frame.readUInt16BE(built.l4Offset + 6)).toBe(0xffff);
  });
});
