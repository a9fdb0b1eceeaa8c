import { RingCapture } from './capture-ring.js';
import { PacketTx } from './capture-batch.js';
import { Drop } from '../packet/drop-reasons.js';
import { completePartialChecksum } from '../packet/checksum.js';
import { GsoSegmenter, VNET_GSO_NONE } from '../packet/gso-segment.js';
import { G } from './contract/counters.js';
import { FRAME_SLOT_BYTES } from './contract/limits.js';
import {
  F_CSUM_NOT_READY,
  F_IN_RING,
  F_TRUNCATED,
  F_VLAN_VALID,
  F_VNET,
  F_VNET_NEEDS_CSUM,
  M_CAPLEN,
  M_CSUM,
  M_FLAGS,
  M_GSO,
  M_RING_OFF,
  RING_META_WORDS,
} from './ring-frame.js';
import type { CaptureEngine, CaptureStats, EngineOptions } from './engine.js';
import { slotViews } from './slot-views.js';
import { txPathFromEnv } from './tx-path.js';

const PARTIAL = F_CSUM_NOT_READY | F_VNET_NEEDS_CSUM;

/** TPACKET_V2 (default, a wake-up per frame) or V3 (per block): SLUICE_RING_TPACKET=3 to measure V3. */
function ringVersion(): 2 | 3 {
  return process.env.SLUICE_RING_TPACKET === '3' ? 3 : 2;
}

/**
 * Sluice's own AF_PACKET engine (the default): a TPACKET_V2 receive ring whose per-frame status
 * reaches this layer, one JS call per batch, one sendmmsg per batch of output frames.
 *
 * Before a frame reaches the forwarder it is made what a wire would carry, using only what the
 * kernel says about it (never a guess from the checksum field):
 *  - partial checksum (TP_STATUS_CSUMNOTREADY, from local/veth/virtio senders with checksum
 *    offload, the kernel default): completed in place, counted in csumCompleted;
 *  - GSO super-frame (virtio_net_hdr gso_type, up to 64 KiB, from senders with TSO/GSO): cut
 *    into MSS-sized segments with complete checksums, each forwarded on its own;
 *  - a VLAN tag the kernel stripped (it untags before packet taps): the addon puts it back in
 *    front of the frame, as libpcap does, so the forwarder parses the frame as it arrived
 *    (counted in vlanRestored); a GSO super-frame's segments leave untagged;
 *  - truncated (tp_snaplen < tp_len): dropped and counted.
 * A frame whose checksum is already complete, right or wrong, is never touched.
 */
export class RingEngine implements CaptureEngine {
  readonly name = 'ring' as const;
  readonly seesChecksumStatus = true;
  readonly #opts: EngineOptions;
  readonly #rx: RingCapture;
  readonly #tx: PacketTx;
  readonly #rxSlots: Buffer[];
  readonly #txSlots: Buffer[];
  readonly #segment = new GsoSegmenter();
  readonly #segBuf = Buffer.alloc(FRAME_SLOT_BYTES);
  #n = 0;
  /** Without PACKET_VNET_HDR: where a partial checksum starts and sits, found from the headers. */
  #csumStart = 0;
  #csumOffset = 0;

  constructor(opts: EngineOptions) {
    this.#opts = opts;
    this.#rx = new RingCapture({
      device: opts.interface,
      filter: opts.filter,
      bufferBytes: opts.bufferBytes,
      batchSize: opts.batchSize,
      slotSize: FRAME_SLOT_BYTES,
      tpacketVersion: ringVersion(),
      fanoutGroup: opts.fanoutGroup,
    });
    try {
      this.#tx = new PacketTx({ device: opts.egressInterface, batchSize: opts.batchSize, slotSize: FRAME_SLOT_BYTES, ...txPathFromEnv() });
    } catch (e) {
      this.#rx.close();
      throw e;
    }
    this.#rxSlots = slotViews(this.#rx.frames, this.#rx.batchSize, FRAME_SLOT_BYTES);
    // The transmit slots: with a TX ring they are ring frames and move after every flush.
    this.#txSlots = this.#tx.slots;
  }

  /** The transmit path: sendmmsg or tx-ring, +qdisc-bypass. */
  get transmit(): string {
    return this.#tx.path;
  }

  /** False when the kernel refused PACKET_VNET_HDR (GSO super-frames then cannot be cut). */
  get vnetHeader(): boolean {
    return this.#rx.vnetHeader;
  }

  start(): void {
    this.#rx.start((count: number) => this.#onBatch(count));
  }

  #onBatch(count: number): void {
    const fwd = this.#opts.forwarder;
    const c = fwd.counters;
    const meta = this.#rx.meta;
    const rxSlots = this.#rxSlots;
    const now = Date.now();
    c[G.batches]++;
    this.#n = 0;
    for (let i = 0; i < count; i++) {
      const m = i * RING_META_WORDS;
      const flags = meta[m + M_FLAGS];
      const len = meta[m + M_CAPLEN];
      if ((flags & (F_VLAN_VALID | F_IN_RING)) === F_VLAN_VALID) c[G.vlanRestored]++;
      if ((flags & F_TRUNCATED) !== 0) {
        c[G.rxFrames]++;
        fwd.countDrop(Drop.capture_truncated);
        continue;
      }
      const gsoType = meta[m + M_GSO] & 0xffff;
      if (gsoType !== VNET_GSO_NONE || (flags & F_IN_RING) !== 0) {
        this.#cut(i, flags, len, gsoType, now);
        continue;
      }
      const rx = rxSlots[i];
      if ((flags & PARTIAL) !== 0) {
        const ok =
          (flags & F_VNET) !== 0
            ? completePartialChecksum(rx, 0, len, meta[m + M_CSUM] & 0xffff, meta[m + M_CSUM] >>> 16)
            : this.#locatePartial(rx, len) && completePartialChecksum(rx, 0, len, this.#csumStart, this.#csumOffset);
        if (!ok) {
          c[G.rxFrames]++;
          fwd.countDrop(Drop.bad_partial_checksum);
          continue;
        }
        c[G.csumCompleted]++;
      }
      this.#emit(fwd.forward(rx, len, this.#txSlots[this.#n], now));
    }
    if (this.#n > 0) this.#flush();
  }

  /** A GSO super-frame (or a frame too big for a slot): cut it and forward every segment. */
  #cut(i: number, flags: number, len: number, gsoType: number, now: number): void {
    const fwd = this.#opts.forwarder;
    const c = fwd.counters;
    const meta = this.#rx.meta;
    const m = i * RING_META_WORDS;
    if (gsoType === VNET_GSO_NONE) {
      c[G.rxFrames]++;
      fwd.countDrop(Drop.oversize_frame);
      return;
    }
    const inRing = (flags & F_IN_RING) !== 0;
    const src = inRing ? this.#rx.ring : this.#rxSlots[i];
    const off = inRing ? meta[m + M_RING_OFF] : 0;
    const seg = this.#segment;
    if (seg.begin(src, off, len, gsoType, meta[m + M_GSO] >>> 16, meta[m + M_CSUM] & 0xffff) === 0) {
      c[G.rxFrames]++;
      fwd.countDrop(Drop.gso_unsupported);
      return;
    }
    c[G.gsoFrames]++;
    const buf = this.#segBuf;
    for (let segLen = seg.next(buf); segLen > 0; segLen = seg.next(buf)) {
      c[G.gsoSegments]++;
      this.#emit(fwd.forward(buf, segLen, this.#txSlots[this.#n], now));
    }
  }

  #emit(out: number): void {
    if (out === 0) return;
    this.#tx.lengths[this.#n++] = out;
    if (this.#n === this.#tx.batchSize) this.#flush();
  }

  #flush(): void {
    const n = this.#n;
    this.#n = 0;
    const fwd = this.#opts.forwarder;
    const c = fwd.counters;
    const sent = this.#tx.flush(n);
    c[G.txFrames] += sent;
    if (sent < n) {
      c[G.txErrors] += n - sent;
      for (let k = sent; k < n; k++) fwd.countDrop(Drop.tx_error);
    }
    const lengths = this.#tx.lengths;
    for (let k = 0; k < sent; k++) c[G.txBytes] += lengths[k];
  }

  /**
   * Without the kernel's vnet header, where a partial TCP/UDP checksum starts and sits: after
   * the IPv4 header (its IHL) or the fixed IPv6 header. False for anything else.
   */
  #locatePartial(b: Buffer, len: number): boolean {
    let l3 = 14;
    let et = len >= 14 ? (b[12] << 8) | b[13] : 0;
    for (let tags = 0; (et === 0x8100 || et === 0x88a8) && tags < 2 && l3 + 4 <= len; tags++) {
      et = (b[l3 + 2] << 8) | b[l3 + 3];
      l3 += 4;
    }
    let l4: number;
    let proto: number;
    if (et === 0x0800 && l3 + 20 <= len) {
      l4 = l3 + ((b[l3] & 0x0f) << 2);
      proto = b[l3 + 9];
    } else if (et === 0x86dd && l3 + 40 <= len) {
      l4 = l3 + 40;
      proto = b[l3 + 6];
    } else {
      return false;
    }
    this.#csumStart = l4;
    this.#csumOffset = proto === 6 ? 16 : proto === 17 ? 6 : -1;
    return this.#csumOffset >= 0;
  }

  setFilter(filter: string): void {
    this.#rx.setFilter(filter);
  }

  stats(): CaptureStats {
    const s = this.#rx.stats();
    return { received: s.received, dropped: s.dropped, ifDropped: 0 };
  }

  sendFrame(buf: Buffer, len: number): boolean {
    return this.#tx.sendOne(buf, len);
  }

  close(): void {
    this.#rx.close();
    this.#tx.close();
  }
}
