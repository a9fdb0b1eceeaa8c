// The ring addon's frame readers (native/sluice_ring.c: take_frame for TPACKET_V3 blocks,
// take_frame_v2 for TPACKET_V2 slots, the default) over golden TPACKET_V3 blocks and V2 slots: a block descriptor and frame headers laid out byte for byte as the kernel writes them
// (include/uapi/linux/if_packet.h: struct tpacket_block_desc, tpacket3_hdr, sockaddr_ll, and
// the virtio_net_hdr in front of each frame with PACKET_VNET_HDR), run through walkBlock /
// walkFramesV2, the same code the live ring uses: which frames are read in place and which are
// copied, and the partial checksums the addon completes (golden bytes before and after, and the
// same bytes as the JS completePartialChecksum). Needs the addon built (`npm run build`); no privileges.
import { describe, expect, it } from 'vitest';
import { ringFrameViews, ringMacOffset, walkRingBlock, walkRingFramesV2 } from '../../src/dataplane/capture-ring.js';
import { RING_META_WORDS, decodeRingFrame, type RingFrameStatus } from '../../src/dataplane/ring-frame.js';
import { buildFrame, buildFrameDetailed, type FrameSpec } from '../../src/packet/build.js';
import { completePartialChecksum, foldSum, pseudoHeaderSum } from '../../src/packet/checksum.js';

// Kernel ABI offsets (checked against the uapi headers with offsetof on x86-64).
const BD_STATUS = 8;
const BD_NUM_PKTS = 12;
const BD_FIRST = 16;
const BD_SIZE = 48;
const H3_NEXT = 0;
const H3_SNAPLEN = 12;
const H3_LEN = 16;
const H3_STATUS = 20;
const H3_MAC = 24;
const H3_NET = 26;
const H3_TCI = 32;
const H3_TPID = 36;
const SLL_PKTTYPE = 48 + 10;
const TP_STATUS_USER = 0x1;
const TP_STATUS_CSUMNOTREADY = 0x8;
const TP_STATUS_VLAN_VALID = 0x10;
const TP_STATUS_VLAN_TPID_VALID = 0x40;
const TP_STATUS_CSUM_VALID = 0x80;
const PACKET_HOST = 0;
const PACKET_OUTGOING = 4;
/** Where the kernel puts the frame: TPACKET_ALIGN(68 + 16) = 96 for the network header, mac 14 before; +10 with a vnet header. */
const MAC_OFF = 82;
const VNET_MAC_OFF = 92;

interface GoldenFrame {
  frame: Buffer;
  /** tp_len when the kernel cut the frame (snaplen = frame.length). */
  wireLen?: number;
  status: number;
  pkttype?: number;
  vlan?: { tci: number; tpid: number };
  vnet?: { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number };
}

/** The virtio_net_hdr the kernel writes in front of a frame (host order, little-endian here). */
function writeVnet(buf: Buffer, at: number, v: NonNullable<GoldenFrame['vnet']>): void {
  buf[at] = v.flags;
  buf[at + 1] = v.gsoType;
  buf.writeUInt16LE(v.hdrLen, at + 2);
  buf.writeUInt16LE(v.gsoSize, at + 4);
  buf.writeUInt16LE(v.csumStart, at + 6);
  buf.writeUInt16LE(v.csumOffset, at + 8);
}

/** A retired block holding the frames, each at a 16-byte aligned offset as the kernel packs them. */
function goldenBlock(frames: GoldenFrame[], vnet: boolean): Buffer {
  const block = Buffer.alloc(128 * 1024);
  block.writeUInt32LE(1, 0); // version
  block.writeUInt32LE(TP_STATUS_USER, BD_STATUS);
  block.writeUInt32LE(frames.length, BD_NUM_PKTS);
  block.writeUInt32LE(BD_SIZE, BD_FIRST);
  let off = BD_SIZE;
  frames.forEach((f, i) => {
    const mac = vnet ? VNET_MAC_OFF : MAC_OFF;
    const total = (mac + f.frame.length + 15) & ~15;
    block.writeUInt32LE(i === frames.length - 1 ? 0 : total, off + H3_NEXT);
    block.writeUInt32LE(f.frame.length, off + H3_SNAPLEN);
    block.writeUInt32LE(f.wireLen ?? f.frame.length, off + H3_LEN);
    block.writeUInt32LE(TP_STATUS_USER | f.status, off + H3_STATUS);
    block.writeUInt16LE(mac, off + H3_MAC);
    block.writeUInt16LE(mac + 14, off + H3_NET);
    if (f.vlan) {
      block.writeUInt32LE(f.vlan.tci, off + H3_TCI);
      block.writeUInt16LE(f.vlan.tpid, off + H3_TPID);
    }
    block[off + SLL_PKTTYPE] = f.pkttype ?? PACKET_HOST;
    if (vnet && f.vnet) writeVnet(block, off + mac - 10, f.vnet);
    f.frame.copy(block, off + mac);
    off += total;
  });
  return block;
}

const SLOT = 2048;
function walk(block: Buffer, vnet: boolean): { count: number; frames: Buffer; meta: Uint32Array } {
  const frames = Buffer.alloc(8 * SLOT);
  const meta = new Uint32Array(8 * RING_META_WORDS);
  const count = walkRingBlock(block, vnet, SLOT, frames, meta);
  return { count, frames, meta };
}

const syn4 = buildFrame({ ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, tcp: { sport: 40000, dport: 80, flags: 0x02 } });
const udp6 = buildFrame({ ipv6: { src: 'fd00:99:1::2', dst: 'fd00:99:2::10' }, udp: { sport: 40001, dport: 53 }, payload: 'q' });
const big = buildFrame({ ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, tcp: { sport: 40002, dport: 80, flags: 0x10 }, payload: Buffer.alloc(2896, 0x61) });
const noVnet = null;
const base = { checksumValid: false, truncated: false, losing: false, vlan: null, ringOffset: null, ringFrame: null, copied: true, checksumCompletion: null };

/**
 * What an offloading sender's kernel hands the device for a complete frame (buildFrame computes
 * the checksum, an independent writer): the checksum field holds only the folded pseudo-header sum.
 */
function partialOf(spec: FrameSpec): { partial: Buffer; complete: Buffer; csumStart: number; csumOffset: number } {
  const built = buildFrameDetailed(spec);
  const proto = spec.tcp ? 6 : 17;
  const v4 = spec.ipv4 !== undefined;
  const addrLen = v4 ? 4 : 16;
  const src = built.l3Offset + (v4 ? 12 : 8);
  const csumOffset = proto === 6 ? 16 : 6;
  const partial = Buffer.from(built.frame);
  partial.writeUInt16BE(foldSum(pseudoHeaderSum(partial, src, src + addrLen, addrLen, proto, partial.length - built.l4Offset)), built.l4Offset + csumOffset);
  return { partial, complete: built.frame, csumStart: built.l4Offset, csumOffset };
}

const F_CSUM_NOT_READY = 0x1;
const F_VNET = 0x20;
const F_VNET_NEEDS_CSUM = 0x40;
const F_IN_PLACE = 0x200;
const F_COPIED = 0x400;
const F_CSUM_COMPLETED = 0x800;
const syn4p = partialOf({ ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, tcp: { sport: 40000, dport: 80, flags: 0x02 } });

describe('ring block walker over golden TPACKET_V3 blocks', () => {
  it('a partial-checksum TCP frame with its vnet header: flags, offsets, the frame copied to its slot and its checksum completed there', () => {
    const vn = { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 };
    const { count, frames, meta } = walk(goldenBlock([{ frame: syn4p.partial, status: TP_STATUS_CSUMNOTREADY, vnet: vn }], true), true);
    expect(count).toBe(1);
    expect(Array.from(meta.subarray(0, RING_META_WORDS))).toEqual([syn4.length, F_CSUM_NOT_READY | F_VNET | F_VNET_NEEDS_CSUM | F_COPIED | F_CSUM_COMPLETED, 0, syn4.length, 0, 34 | (16 << 16), 0, 0, 0]);
    expect(decodeRingFrame(meta, 0)).toEqual<RingFrameStatus>({
      ...base,
      caplen: syn4.length,
      wireLen: syn4.length,
      checksumPartial: true,
      checksumCompletion: 'completed',
      vnet: { needsCsum: true, dataValid: false, csumStart: 34, csumOffset: 16, gsoType: 0, gsoSize: 0, hdrLen: 0 },
    });
    expect(frames.subarray(0, syn4.length).toString('hex')).toBe(syn4p.complete.toString('hex'));
  });

  it('three frames in one block: complete checksum, a frame the kernel cut short, our own outgoing frame skipped', () => {
    const block = goldenBlock(
      [
        { frame: udp6, status: TP_STATUS_CSUM_VALID },
        { frame: syn4.subarray(0, 40), wireLen: syn4.length, status: 0 },
        { frame: syn4, status: 0, pkttype: PACKET_OUTGOING },
      ],
      false,
    );
    const { count, frames, meta } = walk(block, false);
    expect(count).toBe(2);
    expect(decodeRingFrame(meta, 0)).toEqual<RingFrameStatus>({ ...base, caplen: udp6.length, wireLen: udp6.length, checksumPartial: false, checksumValid: true, vnet: noVnet });
    expect(decodeRingFrame(meta, 1)).toEqual<RingFrameStatus>({ ...base, caplen: 40, wireLen: syn4.length, checksumPartial: false, truncated: true, vnet: noVnet });
    expect(frames.subarray(0, udp6.length).toString('hex')).toBe(udp6.toString('hex'));
    expect(frames.subarray(SLOT, SLOT + 40).toString('hex')).toBe(syn4.subarray(0, 40).toString('hex'));
  });

  it('a stripped 802.1Q tag goes back in front of the frame; csum_start moves with it', () => {
    const vn = { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 };
    const block = goldenBlock([{ frame: syn4p.partial, status: TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, vlan: { tci: 0x2064, tpid: 0x8100 }, vnet: vn }], true);
    const { count, frames, meta } = walk(block, true);
    expect(count).toBe(1);
    const tagged = buildFrame({ vlan: { id: 100, pcp: 1 }, ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, tcp: { sport: 40000, dport: 80, flags: 0x02 } });
    expect(frames.subarray(0, syn4.length + 4).toString('hex')).toBe(tagged.toString('hex'));
    const s = decodeRingFrame(meta, 0);
    expect(s.vlan).toEqual({ tci: 0x2064, tpid: 0x8100 });
    expect(s.caplen).toBe(syn4.length + 4);
    expect(s.vnet?.csumStart).toBe(38);
    expect(s.checksumCompletion).toBe('completed');
  });

  it('an 802.1ad tag without TPID status reads as 802.1Q (the kernel had no TPID to give)', () => {
    const block = goldenBlock([{ frame: udp6, status: TP_STATUS_VLAN_VALID, vlan: { tci: 7, tpid: 0x88a8 } }], false);
    const { frames, meta } = walk(block, false);
    expect(decodeRingFrame(meta, 0).vlan).toEqual({ tci: 7, tpid: 0x8100 });
    expect(frames.readUInt16BE(12)).toBe(0x8100);
    expect(frames.readUInt16BE(14)).toBe(7);
  });

  it('a GSO super-frame bigger than a slot stays in the ring, its partial checksum left for the segmenter: its offset, gso_type and gso_size', () => {
    const vn = { flags: 1, gsoType: 1, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
    const block = goldenBlock([{ frame: syn4, status: 0 }, { frame: big, status: TP_STATUS_CSUMNOTREADY, vnet: vn }], true);
    const { count, meta } = walk(block, true);
    expect(count).toBe(2);
    const s = decodeRingFrame(meta, 1);
    const expectedOffset = BD_SIZE + ((VNET_MAC_OFF + syn4.length + 15) & ~15) + VNET_MAC_OFF;
    expect(s).toEqual<RingFrameStatus>({
      ...base,
      caplen: big.length,
      wireLen: big.length,
      ringOffset: expectedOffset,
      copied: false,
      checksumPartial: true,
      vnet: { needsCsum: true, dataValid: false, csumStart: 34, csumOffset: 16, gsoType: 1, gsoSize: 1448, hdrLen: 66 },
    });
    expect(block.subarray(expectedOffset, expectedOffset + big.length).equals(big)).toBe(true);
  });

  it('a block that claims more frames than it holds stops at its end', () => {
    const block = goldenBlock([{ frame: syn4, status: 0 }], false).subarray(0, 4096);
    block.writeUInt32LE(5, BD_NUM_PKTS);
    block.writeUInt32LE(4090, BD_SIZE + H3_NEXT); // the next frame header would sit past the end
    expect(walk(Buffer.from(block), false).count).toBe(1);
  });
});

// TPACKET_V2 (the default ring): struct tpacket2_hdr, sockaddr_ll at TPACKET_ALIGN(32).
const H2_STATUS = 0;
const H2_LEN = 4;
const H2_SNAPLEN = 8;
const H2_MAC = 12;
const H2_NET = 14;
const H2_TCI = 24;
const H2_TPID = 26;
const SLL2_PKTTYPE = 32 + 10;
const TP_STATUS_COPY = 0x2;
/** TPACKET_ALIGN(52 + 16) = 80 for the network header, mac 14 before; +10 with a vnet header (af_packet.c tpacket_rcv). */
const V2_MAC = 66;
const V2_VNET_MAC = 76;
const FRAME = 2048;

interface GoldenSlot extends GoldenFrame {
  /** tp_mac when the kernel put the frame somewhere else than usual (another link-layer header length). */
  mac?: number;
}

function goldenSlots(frames: (GoldenSlot | null)[], vnet: boolean): Buffer {
  const area = Buffer.alloc(frames.length * FRAME);
  frames.forEach((f, i) => {
    if (f === null) return; // a slot the kernel still owns (status 0)
    const off = i * FRAME;
    const mac = f.mac ?? (vnet ? V2_VNET_MAC : V2_MAC);
    area.writeUInt32LE(TP_STATUS_USER | f.status, off + H2_STATUS);
    area.writeUInt32LE(f.wireLen ?? f.frame.length, off + H2_LEN);
    area.writeUInt32LE(f.frame.length, off + H2_SNAPLEN);
    area.writeUInt16LE(mac, off + H2_MAC);
    area.writeUInt16LE(mac + 14, off + H2_NET);
    if (f.vlan) {
      area.writeUInt16LE(f.vlan.tci, off + H2_TCI);
      area.writeUInt16LE(f.vlan.tpid, off + H2_TPID);
    }
    area[off + SLL2_PKTTYPE] = f.pkttype ?? PACKET_HOST;
    if (vnet && f.vnet) writeVnet(area, off + mac - 10, f.vnet);
    f.frame.copy(area, off + mac);
  });
  return area;
}

/** Copy slots start filled with 0xee: a frame read in place leaves its slot so. */
const UNTOUCHED = 0xee;
function walkV2(area: Buffer, vnet: boolean): { count: number; frames: Buffer; meta: Uint32Array; views: Buffer[] } {
  const frames = Buffer.alloc(8 * SLOT, UNTOUCHED);
  const meta = new Uint32Array(8 * RING_META_WORDS);
  const count = walkRingFramesV2(area, FRAME, vnet, SLOT, frames, meta);
  const frameCount = area.length / FRAME;
  const views = ringFrameViews(area, { frameCount, framesPerBlock: frameCount, frameBytes: FRAME, blockBytes: area.length, macOffset: ringMacOffset(vnet) });
  return { count, frames, meta, views };
}

/** The bytes the forwarder gets for frame i of a batch: its ring frame's view, or its copy slot. */
function seen(w: { frames: Buffer; meta: Uint32Array; views: Buffer[] }, i: number): Buffer {
  const s = decodeRingFrame(w.meta, i);
  return s.ringFrame !== null ? w.views[s.ringFrame].subarray(0, s.caplen) : w.frames.subarray(i * SLOT, i * SLOT + s.caplen);
}

describe('ring frame reader over golden TPACKET_V2 slots (the default ring)', () => {
  it('the addon expects frames where tpacket_rcv puts them: tp_mac 66, 76 with a vnet header', () => {
    expect([ringMacOffset(false), ringMacOffset(true)]).toEqual([V2_MAC, V2_VNET_MAC]);
  });

  it('partial checksum with its vnet header read in place, a kernel-owned slot skipped, an outgoing frame skipped, a tagged frame restored (copied)', () => {
    const vn = { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 };
    const area = goldenSlots(
      [
        { frame: syn4p.partial, status: TP_STATUS_CSUMNOTREADY, vnet: vn },
        null,
        { frame: udp6, status: 0, pkttype: PACKET_OUTGOING },
        { frame: syn4p.partial, status: TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, vlan: { tci: 100, tpid: 0x88a8 }, vnet: vn },
      ],
      true,
    );
    const w = walkV2(area, true);
    const { count, frames, meta } = w;
    expect(count).toBe(2);
    expect(Array.from(meta.subarray(0, RING_META_WORDS))).toEqual([syn4.length, F_CSUM_NOT_READY | F_VNET | F_VNET_NEEDS_CSUM | F_IN_PLACE | F_CSUM_COMPLETED, 0, syn4.length, 0, 34 | (16 << 16), 0, 0, 0]);
    expect(area.subarray(V2_VNET_MAC, V2_VNET_MAC + syn4.length).toString('hex')).toBe(syn4p.complete.toString('hex'));
    expect(seen(w, 0).toString('hex')).toBe(syn4p.complete.toString('hex'));
    expect(frames.subarray(0, SLOT).every((b) => b === UNTOUCHED)).toBe(true);
    const tagged = decodeRingFrame(meta, 1);
    expect(tagged.vlan).toEqual({ tci: 100, tpid: 0x88a8 });
    expect(tagged.vnet?.csumStart).toBe(38);
    expect(tagged.copied).toBe(true);
    expect(tagged.ringFrame).toBe(null);
    expect(frames.subarray(SLOT, SLOT + 16).toString('hex')).toBe(syn4.subarray(0, 12).toString('hex') + '88a80064');
    expect(frames.subarray(SLOT + 16, SLOT + syn4.length + 4).equals(syn4p.complete.subarray(12))).toBe(true);
    // The ring keeps the frame as the kernel wrote it (partial): only the copy was completed.
    expect(area.subarray(3 * FRAME + V2_VNET_MAC, 3 * FRAME + V2_VNET_MAC + syn4.length).equals(syn4p.partial)).toBe(true);
  });

  it('a frame cut to its slot (TP_STATUS_COPY whose whole copy could not be read) is flagged truncated and copied', () => {
    const area = goldenSlots([{ frame: big.subarray(0, 1900), wireLen: big.length, status: TP_STATUS_COPY }], false);
    const { count, meta } = walkV2(area, false);
    expect(count).toBe(1);
    expect(decodeRingFrame(meta, 0)).toEqual<RingFrameStatus>({ ...base, caplen: 1900, wireLen: big.length, checksumPartial: false, truncated: true, vnet: noVnet });
  });

  // Which frames are read in place (no copy) and which take the copy path, and the view that
  // shows an in-place frame to the forwarder: byte 0 is the frame's first byte.
  const placement: { name: string; vnet: boolean; slot: GoldenSlot; at: number; inPlace: boolean; expect: Buffer }[] = [
    { name: 'a plain frame at tp_mac 66', vnet: false, slot: { frame: udp6, status: 0 }, at: 2, inPlace: true, expect: udp6 },
    { name: 'a plain frame at tp_mac 76 (vnet header)', vnet: true, slot: { frame: syn4, status: TP_STATUS_CSUM_VALID, vnet: { flags: 2, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 } }, at: 5, inPlace: true, expect: syn4 },
    { name: 'a frame the kernel put elsewhere (tp_mac 82)', vnet: false, slot: { frame: udp6, status: 0, mac: 82 }, at: 1, inPlace: false, expect: udp6 },
    { name: 'a frame whose stripped VLAN tag goes back in front', vnet: false, slot: { frame: udp6, status: TP_STATUS_VLAN_VALID, vlan: { tci: 7, tpid: 0 } }, at: 0, inPlace: false, expect: Buffer.concat([udp6.subarray(0, 12), Buffer.from('81000007', 'hex'), udp6.subarray(12)]) },
    { name: 'a TP_STATUS_COPY frame (its whole copy is in the socket queue)', vnet: false, slot: { frame: syn4, status: TP_STATUS_COPY }, at: 3, inPlace: false, expect: syn4 },
  ];
  for (const c of placement) {
    it(`${c.name}: ${c.inPlace ? 'read in place, in the view of its ring frame, nothing copied' : 'copied to its slot'}`, () => {
      const slots: (GoldenSlot | null)[] = new Array<GoldenSlot | null>(6).fill(null);
      slots[c.at] = c.slot;
      const w = walkV2(goldenSlots(slots, c.vnet), c.vnet);
      expect(w.count).toBe(1);
      const s = decodeRingFrame(w.meta, 0);
      expect({ ringFrame: s.ringFrame, copied: s.copied }).toEqual(c.inPlace ? { ringFrame: c.at, copied: false } : { ringFrame: null, copied: true });
      expect(seen(w, 0).toString('hex')).toBe(c.expect.toString('hex'));
      expect(w.frames.subarray(0, SLOT).every((b) => b === UNTOUCHED)).toBe(c.inPlace);
    });
  }
});

describe('ring frame views (RingCapture.frameViews)', () => {
  // Ring frames never straddle blocks: a block of 8192 bytes holds 3 frames of 2560, and 512 bytes stay unused.
  const layouts: { name: string; frameBytes: number; framesPerBlock: number; blockBytes: number; frameCount: number; macOffset: number; starts: [number, number][] }[] = [
    { name: 'frames that fill their blocks', frameBytes: 2048, framesPerBlock: 4, blockBytes: 8192, frameCount: 8, macOffset: 66, starts: [[0, 66], [3, 3 * 2048 + 66], [4, 8192 + 66], [7, 8192 + 3 * 2048 + 66]] },
    { name: 'blocks with a tail no frame uses', frameBytes: 2560, framesPerBlock: 3, blockBytes: 8192, frameCount: 6, macOffset: 76, starts: [[2, 2 * 2560 + 76], [3, 8192 + 76], [5, 8192 + 2 * 2560 + 76]] },
  ];
  for (const l of layouts) {
    it(`${l.name}: one view per ring frame, starting at its tp_mac, ending with its ring frame`, () => {
      const area = Buffer.alloc((l.frameCount / l.framesPerBlock) * l.blockBytes);
      const views = ringFrameViews(area, l);
      expect(views.length).toBe(l.frameCount);
      for (const [k, start] of l.starts) {
        expect(views[k].byteOffset - area.byteOffset).toBe(start);
        expect(views[k].length).toBe(l.frameBytes - l.macOffset);
        expect(views[k].buffer).toBe(area.buffer);
      }
    });
  }

  it('a layout bigger than the area, or a tp_mac past the frame, is refused at set-up', () => {
    expect(() => ringFrameViews(Buffer.alloc(8192), { frameBytes: 2048, framesPerBlock: 4, blockBytes: 8192, frameCount: 8, macOffset: 66 })).toThrow(RangeError);
    expect(() => ringFrameViews(Buffer.alloc(8192), { frameBytes: 2048, framesPerBlock: 4, blockBytes: 8192, frameCount: 4, macOffset: 2048 })).toThrow(RangeError);
    expect(ringFrameViews(Buffer.alloc(0), { frameBytes: 2048, framesPerBlock: 4, blockBytes: 8192, frameCount: 0, macOffset: 66 })).toEqual([]);
  });
});

// Partial checksums (TP_STATUS_CSUMNOTREADY) completed by the addon where the forwarder reads the
// frame: golden bytes before (the pseudo-header sum in the field, as an offloading sender's kernel
// leaves it) and after (the complete frame buildFrame writes), and the same bytes as the JS
// completePartialChecksum (what the engine did before the addon did it).
describe('partial checksums completed in the addon', () => {
  const payload = 'GET / HTTP/1.1\r\nHost: vip\r\n\r\n';
  const specs: { name: string; spec: FrameSpec }[] = [
    { name: 'TCP over IPv4', spec: { ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, tcp: { sport: 40000, dport: 80, seq: 1, flags: 0x18 }, payload } },
    { name: 'UDP over IPv4', spec: { ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, udp: { sport: 40001, dport: 53 }, payload: 'query' } },
    { name: 'TCP over IPv6', spec: { ipv6: { src: 'fd00:99:1::2', dst: 'fd00:99:2::10' }, tcp: { sport: 40002, dport: 80, flags: 0x18 }, payload } },
    { name: 'UDP over IPv6, odd length', spec: { ipv6: { src: 'fd00:99:1::2', dst: 'fd00:99:2::10' }, udp: { sport: 40003, dport: 53 }, payload: 'odd' } },
    { name: 'TCP over IPv4 with IP options (IHL 6)', spec: { ipv4: { src: '10.99.1.2', dst: '10.99.2.10', options: Buffer.from([1, 1, 1, 0]) }, tcp: { sport: 40004, dport: 80, flags: 0x18 }, payload } },
  ];
  type Path = 'V2 in place' | 'V3 copied';
  const cases: { name: string; spec: FrameSpec; vnet: boolean; path: Path }[] = [];
  for (const sp of specs) for (const vnet of [true, false]) for (const path of ['V2 in place', 'V3 copied'] as Path[]) cases.push({ name: sp.name, spec: sp.spec, vnet, path });

  /** Runs one golden frame through the walker of `path`; the bytes the forwarder gets, and its status. */
  function run(f: GoldenSlot, vnet: boolean, path: Path): { bytes: Buffer; status: RingFrameStatus } {
    if (path === 'V3 copied') {
      const w = walk(goldenBlock([f], vnet), vnet);
      expect(w.count).toBe(1);
      const status = decodeRingFrame(w.meta, 0);
      return { bytes: w.frames.subarray(0, status.caplen), status };
    }
    const w = walkV2(goldenSlots([null, f], vnet), vnet);
    expect(w.count).toBe(1);
    return { bytes: seen(w, 0), status: decodeRingFrame(w.meta, 0) };
  }

  for (const c of cases) {
    it(`${c.name}, ${c.vnet ? 'csum_start/offset from the vnet header' : 'no vnet header: located from the headers'}, ${c.path}: completed to the complete frame's bytes`, () => {
      const { partial, complete, csumStart, csumOffset } = partialOf(c.spec);
      expect(partial.equals(complete)).toBe(false); // the partial frame really is wrong on the wire
      const vn = c.vnet ? { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart, csumOffset } : undefined;
      const { bytes, status } = run({ frame: partial, status: TP_STATUS_CSUMNOTREADY, vnet: vn }, c.vnet, c.path);
      expect(status.checksumCompletion).toBe('completed');
      expect(status.ringFrame !== null).toBe(c.path === 'V2 in place');
      expect(bytes.toString('hex')).toBe(complete.toString('hex'));
      const js = Buffer.from(partial);
      expect(completePartialChecksum(js, 0, js.length, csumStart, csumOffset)).toBe(true);
      expect(bytes.toString('hex')).toBe(js.toString('hex'));
    });
  }

  it('a restored VLAN tag (copied): csum_start moves with it, without a vnet header the tag is skipped to find the L4 header', () => {
    const spec: FrameSpec = { ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, udp: { sport: 40005, dport: 53 }, payload: 'tagged' };
    const { partial, complete } = partialOf(spec);
    for (const vnet of [true, false]) {
      const vn = vnet ? { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 6 } : undefined;
      const { bytes, status } = run({ frame: partial, status: TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID, vlan: { tci: 42, tpid: 0 }, vnet: vn }, vnet, 'V2 in place');
      expect({ completion: status.checksumCompletion, copied: status.copied }).toEqual({ completion: 'completed', copied: true });
      expect(bytes.toString('hex')).toBe(buildFrame({ ...spec, vlan: { id: 42 } }).toString('hex'));
      expect(bytes.subarray(16).equals(complete.subarray(12))).toBe(true);
    }
  });

  it('a UDP checksum that computes to 0 is written as 0xffff, as the kernel and the JS do', () => {
    const spec = (word: number): FrameSpec => ({ ipv4: { src: '10.0.0.1', dst: '10.0.0.2' }, udp: { sport: 1, dport: 2, checksum: 0 }, payload: Buffer.from([word >>> 8, word & 0xff]) });
    const probe = buildFrameDetailed(spec(0));
    const word = 0xffff - foldSum(pseudoHeaderSum(probe.frame, 26, 30, 4, 17, 10) + 1 + 2 + 10);
    const frame = Buffer.from(buildFrameDetailed(spec(word)).frame);
    frame.writeUInt16BE(foldSum(pseudoHeaderSum(frame, 26, 30, 4, 17, 10)), 34 + 6);
    const { bytes } = run({ frame, status: TP_STATUS_CSUMNOTREADY }, false, 'V2 in place');
    expect(bytes.readUInt16BE(34 + 6)).toBe(0xffff);
  });

  // Could not complete: flagged 'bad' (the engine drops it as bad_partial_checksum), bytes untouched.
  const icmp = buildFrame({ ipv4: { src: '10.0.0.1', dst: '10.0.0.2' }, raw: { protocol: 1, bytes: Buffer.from('0800f7ff00000000', 'hex') } });
  const ext6 = buildFrame({ ipv6: { src: 'fd00::1', dst: 'fd00::2', extensionHeaders: [{ type: 60, data: Buffer.alloc(6) }] }, udp: { sport: 1, dport: 2 }, payload: 'x' });
  const bad: { name: string; frame: Buffer; vnet?: { csumStart: number; csumOffset: number } }[] = [
    { name: 'vnet csum_start past the frame', frame: syn4p.partial, vnet: { csumStart: 5000, csumOffset: 16 } },
    { name: 'vnet checksum field past the frame', frame: syn4p.partial, vnet: { csumStart: 60, csumOffset: 16 } },
    { name: 'no vnet header, not TCP or UDP (ICMP)', frame: icmp },
    { name: 'no vnet header, IPv6 with an extension header', frame: ext6 },
    { name: 'no vnet header, a runt with no IP header', frame: syn4p.partial.subarray(0, 30) },
  ];
  for (const b of bad) {
    for (const path of ['V2 in place', 'V3 copied'] as Path[]) {
      it(`${b.name}, ${path}: flagged not completed, the bytes as they came`, () => {
        const vnet = b.vnet !== undefined;
        const vn = b.vnet ? { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, ...b.vnet } : undefined;
        const { bytes, status } = run({ frame: b.frame, status: TP_STATUS_CSUMNOTREADY, vnet: vn }, vnet, path);
        expect(status.checksumCompletion).toBe('bad');
        expect(bytes.toString('hex')).toBe(b.frame.toString('hex'));
      });
    }
  }

  it('left alone: a complete checksum (no CSUMNOTREADY), a truncated partial frame, a GSO super-frame that fits a ring frame', () => {
    const complete = run({ frame: syn4p.partial, status: TP_STATUS_CSUM_VALID }, false, 'V2 in place');
    expect(complete.status.checksumCompletion).toBe(null);
    expect(complete.bytes.equals(syn4p.partial)).toBe(true);
    const cut = run({ frame: syn4p.partial.subarray(0, 50), wireLen: syn4.length, status: TP_STATUS_CSUMNOTREADY }, false, 'V2 in place');
    expect({ completion: cut.status.checksumCompletion, truncated: cut.status.truncated }).toEqual({ completion: null, truncated: true });
    expect(cut.bytes.equals(syn4p.partial.subarray(0, 50))).toBe(true);
    const gso = run({ frame: syn4p.partial, status: TP_STATUS_CSUMNOTREADY, vnet: { flags: 1, gsoType: 1, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 } }, true, 'V2 in place');
    expect(gso.status.checksumCompletion).toBe(null);
    expect(gso.bytes.equals(syn4p.partial)).toBe(true);
  });
});
