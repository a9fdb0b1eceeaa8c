// The ring addon's frame readers (native/sluice_ring.c: take_frame for TPACKET_V3 blocks,
// take_frame_v2 for TPACKET_V2 slots, the default) over golden TPACKET_V3 blocks and V2 slots: a block descriptor and frame headers laid out byte for byte as the kernel writes them
// (include/uapi/linux/if_packet.h: struct tpacket_block_desc, tpacket3_hdr, sockaddr_ll, and
// the virtio_net_hdr in front of each frame with PACKET_VNET_HDR), run through walkBlock, the
// same code the live ring uses. Needs the addon built (`npm run build`); no privileges.
import { describe, expect, it } from 'vitest';
import { walkRingBlock, walkRingFramesV2 } from '../../src/dataplane/capture-ring.js';
import { RING_META_WORDS, decodeRingFrame, type RingFrameStatus } from '../../src/dataplane/ring-frame.js';
import { buildFrame } from '../../src/packet/build.js';

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
const base = { checksumValid: false, truncated: false, losing: false, vlan: null, ringOffset: null };

describe('ring block walker over golden TPACKET_V3 blocks', () => {
  it('a partial-checksum TCP frame with its vnet header: flags, offsets, and the frame copied to its slot', () => {
    const vn = { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 };
    const { count, frames, meta } = walk(goldenBlock([{ frame: syn4, status: TP_STATUS_CSUMNOTREADY, vnet: vn }], true), true);
    expect(count).toBe(1);
    expect(Array.from(meta.subarray(0, RING_META_WORDS))).toEqual([syn4.length, 0x1 | 0x20 | 0x40, 0, syn4.length, 0, 34 | (16 << 16), 0, 0]);
    expect(decodeRingFrame(meta, 0)).toEqual<RingFrameStatus>({
      ...base,
      caplen: syn4.length,
      wireLen: syn4.length,
      checksumPartial: true,
      vnet: { needsCsum: true, dataValid: false, csumStart: 34, csumOffset: 16, gsoType: 0, gsoSize: 0, hdrLen: 0 },
    });
    expect(frames.subarray(0, syn4.length).toString('hex')).toBe(syn4.toString('hex'));
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
    const block = goldenBlock([{ frame: syn4, status: TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, vlan: { tci: 0x2064, tpid: 0x8100 }, vnet: vn }], true);
    const { count, frames, meta } = walk(block, true);
    expect(count).toBe(1);
    const tagged = buildFrame({ vlan: { id: 100, pcp: 1 }, ipv4: { src: '10.99.1.2', dst: '10.99.2.10' }, tcp: { sport: 40000, dport: 80, flags: 0x02 } });
    expect(frames.subarray(0, syn4.length + 4).toString('hex')).toBe(tagged.toString('hex'));
    const s = decodeRingFrame(meta, 0);
    expect(s.vlan).toEqual({ tci: 0x2064, tpid: 0x8100 });
    expect(s.caplen).toBe(syn4.length + 4);
    expect(s.vnet?.csumStart).toBe(38);
  });

  it('an 802.1ad tag without TPID status reads as 802.1Q (the kernel had no TPID to give)', () => {
    const block = goldenBlock([{ frame: udp6, status: TP_STATUS_VLAN_VALID, vlan: { tci: 7, tpid: 0x88a8 } }], false);
    const { frames, meta } = walk(block, false);
    expect(decodeRingFrame(meta, 0).vlan).toEqual({ tci: 7, tpid: 0x8100 });
    expect(frames.readUInt16BE(12)).toBe(0x8100);
    expect(frames.readUInt16BE(14)).toBe(7);
  });

  it('a GSO super-frame bigger than a slot stays in the ring: its offset, gso_type and gso_size', () => {
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
/** TPACKET_ALIGN(52 + 16) = 80 for the network header, mac 14 before; +10 with a vnet header. */
const V2_MAC = 66;
const V2_VNET_MAC = 76;
const FRAME = 2048;

function goldenSlots(frames: (GoldenFrame | null)[], vnet: boolean): Buffer {
  const area = Buffer.alloc(frames.length * FRAME);
  frames.forEach((f, i) => {
    if (f === null) return; // a slot the kernel still owns (status 0)
    const off = i * FRAME;
    const mac = vnet ? V2_VNET_MAC : V2_MAC;
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

function walkV2(area: Buffer, vnet: boolean): { count: number; frames: Buffer; meta: Uint32Array } {
  const frames = Buffer.alloc(8 * SLOT);
  const meta = new Uint32Array(8 * RING_META_WORDS);
  const count = walkRingFramesV2(area, FRAME, vnet, SLOT, frames, meta);
  return { count, frames, meta };
}

describe('ring frame reader over golden TPACKET_V2 slots (the default ring)', () => {
  it('partial checksum with its vnet header, a kernel-owned slot skipped, an outgoing frame skipped, a tagged frame restored', () => {
    const vn = { flags: 1, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 };
    const area = goldenSlots(
      [
        { frame: syn4, status: TP_STATUS_CSUMNOTREADY, vnet: vn },
        null,
        { frame: udp6, status: 0, pkttype: PACKET_OUTGOING },
        { frame: syn4, status: TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, vlan: { tci: 100, tpid: 0x88a8 }, vnet: vn },
      ],
      true,
    );
    const { count, frames, meta } = walkV2(area, true);
    expect(count).toBe(2);
    expect(Array.from(meta.subarray(0, RING_META_WORDS))).toEqual([syn4.length, 0x1 | 0x20 | 0x40, 0, syn4.length, 0, 34 | (16 << 16), 0, 0]);
    expect(frames.subarray(0, syn4.length).toString('hex')).toBe(syn4.toString('hex'));
    const tagged = decodeRingFrame(meta, 1);
    expect(tagged.vlan).toEqual({ tci: 100, tpid: 0x88a8 });
    expect(tagged.vnet?.csumStart).toBe(38);
    expect(frames.subarray(SLOT, SLOT + 16).toString('hex')).toBe(syn4.subarray(0, 12).toString('hex') + '88a80064');
    expect(frames.subarray(SLOT + 16, SLOT + syn4.length + 4).equals(syn4.subarray(12))).toBe(true);
  });

  it('a frame cut to its slot (TP_STATUS_COPY whose whole copy could not be read) is flagged truncated', () => {
    const area = goldenSlots([{ frame: big.subarray(0, 1900), wireLen: big.length, status: TP_STATUS_COPY }], false);
    const { count, meta } = walkV2(area, false);
    expect(count).toBe(1);
    expect(decodeRingFrame(meta, 0)).toEqual<RingFrameStatus>({ ...base, caplen: 1900, wireLen: big.length, checksumPartial: false, truncated: true, vnet: noVnet });
  });
});
