import { RingCapture } from './capture-ring.js';
import { PacketTx } from './capture-batch.js';
import { Drop } from '../packet/drop-reasons.js';
import { GsoSegmenter, VNET_GSO_NONE } from '../packet/gso-segment.js';
import { G } from './contract/counters.js';
import { FRAME_SLOT_BYTES } from './contract/limits.js';
import {
  F_COPIED,
  F_CSUM_BAD,
  F_CSUM_COMPLETED,
  F_IN_PLACE,
  F_IN_RING,
  F_TRUNCATED,
  F_VLAN_VALID,
  M_CAPLEN,
  M_CSUM,
  M_FLAGS,
  M_GSO,
  M_RING_FRAME,
  M_RING_OFF,
  RING_META_WORDS,
} from './ring-frame.js';
import type { CaptureEngine, CaptureStats, EngineOptions } from './engine.js';
import { slotViews } from './slot-views.js';
import { txPathFromEnv } from './tx-path.js';

/**
 * SLUICE_RING_COPY=1 copies every frame out of the TPACKET_V2 ring as before frames were read in
 * place: to measure what the copy costs, and to show what sluice_capture_frames_in_place_total counts.
 */
function ringInPlace(): boolean {
  return process.env.SLUICE_RING_COPY !== '1';
}

/** TPACKET_V2 (default, a wake-up per frame) or V3 (per block): SLUICE_RING_TPACKET=3 to measure V3. */
function ringVersion(): 2 | 3 {
  return process.env.SLUICE_RING_TPACKET === '3' ? 3 : 2;
}

/**
 * Sluice's own AF_PACKET engine (the default): a TPACKET_V2 receive ring whose per-frame status
 * reaches this layer, one JS call per batch, one sendmmsg per batch of output frames.
 *
 * Frames are read in place in the ring (TPACKET_V2: frameViews, no copy; rxInPlace) or, where
 * that cannot be, from the copy the addon made (rxCopied); see capture-ring.ts.
 *
 * Before a frame reaches the forwarder it is made what a wire would carry, using only what the
 * kernel says about it (never a guess from the checksum field):
 *  - partial checksum (TP_STATUS_CSUMNOTREADY, from local/veth/virtio senders with checksum
 *    offload, the kernel default): completed in place by the addon, before the batch reaches
 *    JS, counted here in csumCompleted (one it could not complete: dropped, bad_partial_checksum);
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
      inPlace: ringInPlace(),
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

  get captureFd(): number {
    return this.#rx.fd;
  }

  start(): void {
    this.#rx.start((count: number) => this.#onBatch(count));
  }

  #onBatch(count: number): void {
    const fwd = this.#opts.forwarder;
    const c = fwd.counters;
    const meta = this.#rx.meta;
    const rxSlots = this.#rxSlots;
    const views = this.#rx.frameViews;
    const now = Date.now();
    c[G.batches]++;
    this.#n = 0;
    for (let i = 0; i < count; i++) {
      const m = i * RING_META_WORDS;
      const flags = meta[m + M_FLAGS];
      const len = meta[m + M_CAPLEN];
      if ((flags & F_COPIED) !== 0) c[G.rxCopied]++;
      else c[G.rxInPlace]++;
      if ((flags & (F_VLAN_VALID | F_COPIED | F_IN_RING)) === (F_VLAN_VALID | F_COPIED)) c[G.vlanRestored]++;
      if ((flags & F_TRUNCATED) !== 0) {
        c[G.rxFrames]++;
        fwd.countDrop(Drop.capture_truncated);
        continue;
      }
      const rx = (flags & F_IN_PLACE) !== 0 ? views[meta[m + M_RING_FRAME]] : rxSlots[i];
      const gsoType = meta[m + M_GSO] & 0xffff;
      if (gsoType !== VNET_GSO_NONE || (flags & F_IN_RING) !== 0) {
        this.#cut(rx, i, flags, len, gsoType, now);
        continue;
      }
      if ((flags & F_CSUM_BAD) !== 0) {
        c[G.rxFrames]++;
        fwd.countDrop(Drop.bad_partial_checksum);
        continue;
      }
      if ((flags & F_CSUM_COMPLETED) !== 0) c[G.csumCompleted]++;
      this.#emit(fwd.forward(rx, len, this.#txSlots[this.#n], now));
    }
    if (this.#n > 0) this.#flush();
  }

  /** A GSO super-frame (or a frame too big for a slot): cut it and forward every segment. `rx`: where it is, unless F_IN_RING. */
  #cut(rx: Buffer, i: number, flags: number, len: number, gsoType: number, now: number): void {
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
    const src = inRing ? this.#rx.ring : rx;
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
