// GsoSegmenter: how the ring engine cuts a GSO super-frame (what a veth or a local sender with
// TSO/GSO on, the kernel default, hands the capture interface). Each case builds the super-frame
// and, independently with buildFrame, every segment a NIC would have put on the wire (its own IP
// length and identification, sequence number, flags and complete checksum), then expects the
// segmenter's output byte for byte.
import { describe, expect, it } from 'vitest';
import { buildFrame, buildFrameDetailed, type FrameSpec } from '../../src/packet/build.js';
import { GsoSegmenter, VNET_GSO_ECN, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP, VNET_GSO_UDP_L4 } from '../../src/packet/gso-segment.js';
import { foldSum, pseudoHeaderSum } from '../../src/packet/checksum.js';

const ACK = 0x10;
const PSH = 0x08;
const FIN = 0x01;
const CWR = 0x80;

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >>> 8)) & 0xff;
  return b;
}

interface Case {
  name: string;
  gsoType: number;
  mss: number;
  /** The super-frame's spec with `payload` as given. */
  whole: (payload: Buffer) => FrameSpec;
  /** Segment k of n with its payload chunk. */
  segment: (k: number, n: number, chunk: Buffer) => FrameSpec;
  payloadLen: number;
}

const v4 = { src: '10.99.1.2', dst: '10.99.2.10' };
const v6 = { src: 'fd00:99:1::2', dst: 'fd00:99:2::10' };
const cases: Case[] = [
  {
    name: 'TCP over IPv4, 3000 bytes at MSS 1448 (FIN+PSH only on the last, CWR only on the first)',
    gsoType: VNET_GSO_TCPV4,
    mss: 1448,
    payloadLen: 3000,
    whole: (payload) => ({ ipv4: { ...v4, id: 0xfffe }, tcp: { sport: 40000, dport: 80, seq: 0xfffffc00, ack: 77, flags: ACK | PSH | FIN | CWR }, payload }),
    segment: (k, n, chunk) => ({
      ipv4: { ...v4, id: (0xfffe + k) & 0xffff },
      tcp: { sport: 40000, dport: 80, seq: (0xfffffc00 + k * 1448) >>> 0, ack: 77, flags: ACK | (k === n - 1 ? PSH | FIN : 0) | (k === 0 ? CWR : 0) },
      payload: chunk,
    }),
  },
  {
    name: 'TCP over IPv6 with ECN flag in gso_type, 4000 bytes at MSS 1428',
    gsoType: VNET_GSO_TCPV6 | VNET_GSO_ECN,
    mss: 1428,
    payloadLen: 4000,
    whole: (payload) => ({ ipv6: v6, tcp: { sport: 40001, dport: 80, seq: 5, flags: ACK | PSH }, payload }),
    segment: (k, n, chunk) => ({ ipv6: v6, tcp: { sport: 40001, dport: 80, seq: 5 + k * 1428, flags: ACK | (k === n - 1 ? PSH : 0) }, payload: chunk }),
  },
  {
    name: 'TCP over IPv4 in an 802.1Q tag, exactly 2 x MSS',
    gsoType: VNET_GSO_TCPV4,
    mss: 1000,
    payloadLen: 2000,
    whole: (payload) => ({ vlan: { id: 100 }, ipv4: { ...v4, id: 1 }, tcp: { sport: 40002, dport: 80, seq: 9, flags: ACK }, payload }),
    segment: (k, _n, chunk) => ({ vlan: { id: 100 }, ipv4: { ...v4, id: 1 + k }, tcp: { sport: 40002, dport: 80, seq: 9 + k * 1000, flags: ACK }, payload: chunk }),
  },
  {
    name: 'UDP GSO (UDP_L4) over IPv4: each segment its own datagram',
    gsoType: VNET_GSO_UDP_L4,
    mss: 1200,
    payloadLen: 2500,
    whole: (payload) => ({ ipv4: { ...v4, id: 40 }, udp: { sport: 40003, dport: 53 }, payload }),
    segment: (k, _n, chunk) => ({ ipv4: { ...v4, id: 40 + k }, udp: { sport: 40003, dport: 53 }, payload: chunk }),
  },
  {
    name: 'UDP GSO (UDP_L4) over IPv6, odd last segment',
    gsoType: VNET_GSO_UDP_L4,
    mss: 1000,
    payloadLen: 2001,
    whole: (payload) => ({ ipv6: v6, udp: { sport: 40004, dport: 53 }, payload }),
    segment: (_k, _n, chunk) => ({ ipv6: v6, udp: { sport: 40004, dport: 53 }, payload: chunk }),
  },
];

/** The super-frame as the sender's kernel leaves it: checksum field = folded pseudo-header sum only. */
function superFrame(c: Case, payload: Buffer): { frame: Buffer; l4: number } {
  const b = buildFrameDetailed(c.whole(payload));
  const f = b.frame;
  const isV4 = f.readUInt16BE(b.l3Offset - 2) === 0x0800;
  const addrLen = isV4 ? 4 : 16;
  const src = isV4 ? b.l3Offset + 12 : b.l3Offset + 8;
  const tcp = c.gsoType !== VNET_GSO_UDP_L4;
  f.writeUInt16BE(foldSum(pseudoHeaderSum(f, src, src + addrLen, addrLen, tcp ? 6 : 17, f.length - b.l4Offset)), b.l4Offset + (tcp ? 16 : 6));
  return { frame: f, l4: b.l4Offset };
}

describe('GsoSegmenter (ring engine, virtio_net_hdr gso_type/gso_size)', () => {
  for (const c of cases) {
    it(c.name, () => {
      const payload = pattern(c.payloadLen);
      const { frame, l4 } = superFrame(c, payload);
      // Inside a bigger area at an odd offset, as a frame sits in the ring.
      const area = Buffer.alloc(frame.length + 301);
      frame.copy(area, 133);
      const seg = new GsoSegmenter();
      const n = Math.ceil(c.payloadLen / c.mss);
      expect(seg.begin(area, 133, frame.length, c.gsoType, c.mss, l4)).toBe(n);
      const out = Buffer.alloc(10240);
      for (let k = 0; k < n; k++) {
        const len = seg.next(out);
        const want = buildFrame(c.segment(k, n, payload.subarray(k * c.mss, Math.min(c.payloadLen, (k + 1) * c.mss))));
        expect(out.subarray(0, len).toString('hex'), `segment ${k}`).toBe(want.toString('hex'));
      }
      expect(seg.next(out)).toBe(0);
    });
  }

  it('a GRO-merged frame (no csum_start, checksum not partial) is cut the same way', () => {
    const c = cases[0];
    const payload = pattern(c.payloadLen);
    const frame = buildFrame(c.whole(payload));
    const seg = new GsoSegmenter();
    expect(seg.begin(frame, 0, frame.length, c.gsoType, c.mss, 0)).toBe(3);
    const out = Buffer.alloc(2048);
    const len = seg.next(out);
    expect(out.subarray(0, len).toString('hex')).toBe(buildFrame(c.segment(0, 3, payload.subarray(0, 1448))).toString('hex'));
  });

  const refused: { name: string; gsoType: number; mss: number; spec: FrameSpec; l4: number }[] = [
    { name: 'UFO (gso_type UDP, IP fragmentation)', gsoType: VNET_GSO_UDP, mss: 1000, spec: { ipv4: v4, udp: { sport: 1, dport: 2 }, payload: pattern(3000) }, l4: 34 },
    { name: 'TCPV4 type on an IPv6 frame', gsoType: VNET_GSO_TCPV4, mss: 1000, spec: { ipv6: v6, tcp: { sport: 1, dport: 2 }, payload: pattern(3000) }, l4: 54 },
    { name: 'TCPV6 type on an IPv4 frame', gsoType: VNET_GSO_TCPV6, mss: 1000, spec: { ipv4: v4, tcp: { sport: 1, dport: 2 }, payload: pattern(3000) }, l4: 34 },
    { name: 'gso_size 0', gsoType: VNET_GSO_TCPV4, mss: 0, spec: { ipv4: v4, tcp: { sport: 1, dport: 2 }, payload: pattern(3000) }, l4: 34 },
    { name: 'csum_start inside the IP header', gsoType: VNET_GSO_TCPV4, mss: 1000, spec: { ipv4: v4, tcp: { sport: 1, dport: 2 }, payload: pattern(3000) }, l4: 20 },
    { name: 'IPv4 total length beyond the frame', gsoType: VNET_GSO_TCPV4, mss: 1000, spec: { ipv4: { ...v4, totalLength: 9000 }, tcp: { sport: 1, dport: 2 }, payload: pattern(3000) }, l4: 34 },
    { name: 'UDP_L4 type on a TCP frame', gsoType: VNET_GSO_UDP_L4, mss: 1000, spec: { ipv4: v4, tcp: { sport: 1, dport: 2 }, payload: pattern(3000) }, l4: 34 },
  ];
  for (const r of refused) {
    it(`refuses ${r.name}: 0 segments`, () => {
      const frame = buildFrame(r.spec);
      expect(new GsoSegmenter().begin(frame, 0, frame.length, r.gsoType, r.mss, r.l4)).toBe(0);
    });
  }

  it('a segment that does not fit the output buffer is not written', () => {
    const c = cases[0];
    const { frame, l4 } = superFrame(c, pattern(c.payloadLen));
    const seg = new GsoSegmenter();
    expect(seg.begin(frame, 0, frame.length, c.gsoType, c.mss, l4)).toBe(3);
    expect(seg.next(Buffer.alloc(1000))).toBe(0);
  });
});
