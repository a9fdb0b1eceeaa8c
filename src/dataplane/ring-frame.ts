/**
 * What the ring addon (native/sluice_ring.c) tells JavaScript about each frame: RING_META_WORDS
 * 32-bit words per frame in one reused Uint32Array, read straight from the kernel's TPACKET_V2/V3
 * frame header (tp_status, tp_len, tp_snaplen, tp_vlan_tci/tpid) and, with PACKET_VNET_HDR,
 * from the virtio_net_hdr the kernel writes in front of the frame; plus where the frame is to be
 * read (in place in its ring frame, copied to its slot, or in `ring`) and what the addon did to a
 * partial checksum. Keep in step with the C.
 */

export const RING_META_WORDS = 9;
/** Bytes of the frame we have: in its slot, in its ring frame (F_IN_PLACE), or in the ring at M_RING_OFF (F_IN_RING). */
export const M_CAPLEN = 0;
export const M_FLAGS = 1;
export const M_RING_OFF = 2;
/** The frame's length as the kernel had it (tp_len); more than M_CAPLEN when truncated. */
export const M_WIRE_LEN = 3;
/** VLAN TCI in the low 16 bits, TPID in the high 16 (F_VLAN_VALID). */
export const M_VLAN = 4;
/** vnet csum_start (low 16) and csum_offset (high 16), relative to the frame's first byte. */
export const M_CSUM = 5;
/** vnet gso_type (low 16) and gso_size (high 16). */
export const M_GSO = 6;
export const M_HDR_LEN = 7;
/** F_IN_PLACE: which ring frame (TPACKET_V2 slot) holds the frame; its view is RingCapture.frameViews[that]. */
export const M_RING_FRAME = 8;

/** TP_STATUS_CSUMNOTREADY: the sender left the L4 checksum for the device to finish (partial). */
export const F_CSUM_NOT_READY = 0x1;
/** TP_STATUS_CSUM_VALID: a device verified the checksum. */
export const F_CSUM_VALID = 0x2;
/**
 * TP_STATUS_VLAN_VALID: the kernel stripped an 802.1Q/802.1ad tag; it is in M_VLAN, and the
 * addon put it back in front of the frame in its slot (as libpcap does), so the forwarder's
 * parser sees the frame as it arrived: such a frame is always copied (no room in front of it in
 * the ring). A frame read in the ring (F_IN_RING) stays untagged.
 */
export const F_VLAN_VALID = 0x4;
/** tp_snaplen < tp_len: part of the frame is missing. */
export const F_TRUNCATED = 0x8;
/** Too big for a slot (a GSO super-frame): read it in the ring, in place, until onBatch returns. */
export const F_IN_RING = 0x10;
/** The vnet words (M_CSUM, M_GSO, M_HDR_LEN) are the kernel's. */
export const F_VNET = 0x20;
export const F_VNET_NEEDS_CSUM = 0x40;
export const F_VNET_DATA_VALID = 0x80;
/** TP_STATUS_LOSING: the ring was full and dropped frames around this one. */
export const F_LOSING = 0x100;
/**
 * Read in place: the frame is where the kernel wrote it, in ring frame M_RING_FRAME (TPACKET_V2),
 * until onBatch returns; nothing was copied. Without it the frame is in its slot of `frames`
 * (or, F_IN_RING, in `ring`).
 */
export const F_IN_PLACE = 0x200;
/** The addon copied the frame's bytes (to its slot, or read it from the socket queue): the copy path. */
export const F_COPIED = 0x400;
/** A partial checksum (F_CSUM_NOT_READY) the addon completed where the frame is read: the bytes are as a wire carries them. */
export const F_CSUM_COMPLETED = 0x800;
/** A partial checksum the addon could not complete (csum_start/offset, or the headers, do not fit the frame): drop it. */
export const F_CSUM_BAD = 0x1000;

/** One frame's status, decoded (tests, logs; the hot path reads the words directly). */
export interface RingFrameStatus {
  caplen: number;
  wireLen: number;
  ringOffset: number | null;
  /** The ring frame (view) the frame is read in, when read in place. */
  ringFrame: number | null;
  copied: boolean;
  checksumPartial: boolean;
  /** For a partial checksum: 'completed' by the addon, 'bad' (could not be), null (left as it is). */
  checksumCompletion: 'completed' | 'bad' | null;
  checksumValid: boolean;
  truncated: boolean;
  losing: boolean;
  vlan: { tci: number; tpid: number } | null;
  vnet: { needsCsum: boolean; dataValid: boolean; csumStart: number; csumOffset: number; gsoType: number; gsoSize: number; hdrLen: number } | null;
}

export function decodeRingFrame(meta: Uint32Array, i: number): RingFrameStatus {
  const m = i * RING_META_WORDS;
  const f = meta[m + M_FLAGS];
  return {
    caplen: meta[m + M_CAPLEN],
    wireLen: meta[m + M_WIRE_LEN],
    ringOffset: (f & F_IN_RING) !== 0 ? meta[m + M_RING_OFF] : null,
    ringFrame: (f & F_IN_PLACE) !== 0 ? meta[m + M_RING_FRAME] : null,
    copied: (f & F_COPIED) !== 0,
    checksumPartial: (f & F_CSUM_NOT_READY) !== 0,
    checksumCompletion: (f & F_CSUM_COMPLETED) !== 0 ? 'completed' : (f & F_CSUM_BAD) !== 0 ? 'bad' : null,
    checksumValid: (f & F_CSUM_VALID) !== 0,
    truncated: (f & F_TRUNCATED) !== 0,
    losing: (f & F_LOSING) !== 0,
    vlan: (f & F_VLAN_VALID) !== 0 ? { tci: meta[m + M_VLAN] & 0xffff, tpid: meta[m + M_VLAN] >>> 16 } : null,
    vnet:
      (f & F_VNET) !== 0
        ? {
            needsCsum: (f & F_VNET_NEEDS_CSUM) !== 0,
            dataValid: (f & F_VNET_DATA_VALID) !== 0,
            csumStart: meta[m + M_CSUM] & 0xffff,
            csumOffset: meta[m + M_CSUM] >>> 16,
            gsoType: meta[m + M_GSO] & 0xffff,
            gsoSize: meta[m + M_GSO] >>> 16,
            hdrLen: meta[m + M_HDR_LEN],
          }
        : null,
  };
}
