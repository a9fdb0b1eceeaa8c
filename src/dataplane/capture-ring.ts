// Sluice's AF_PACKET receive ring (TPACKET_V2 by default, or V3) over its own Node-API addon
// (native/sluice_ring.c).
//
// The addon reads the frames the kernel handed over, writes RING_META_WORDS status words per frame
// into `meta` (see ring-frame.ts) and calls onBatch(count) once per batch, at most one batch per
// event-loop turn. TPACKET_V2 (the default): a frame is read in place, in its ring frame through
// frameViews[meta M_RING_FRAME] (F_IN_PLACE), no copy; the copy path (a restored VLAN tag, a frame
// at another offset, TP_STATUS_COPY, every V3 frame) puts it in its slot of `frames` (F_COPIED).
// A bigger frame (a GSO super-frame) is read in `ring` (F_IN_RING). All until onBatch returns.
// Partial checksums arrive completed (F_CSUM_COMPLETED) or flagged F_CSUM_BAD.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ADDON_BUILD_COMMAND, packageRoot } from './capture-batch.js';
import { RING_META_WORDS } from './ring-frame.js';

export interface RingCaptureOptions {
  device: string;
  /** BPF filter (pcap syntax), compiled by libpcap and attached with SO_ATTACH_FILTER. */
  filter: string;
  /** Ring size in bytes, rounded down to whole blocks (at least 4 blocks). */
  bufferBytes: number;
  batchSize: number;
  slotSize: number;
  /** Block size: a power of two holding the biggest frame (a 64 KiB GSO super-frame). Default 128 KiB. */
  blockBytes?: number;
  /** Longest the kernel keeps a partly filled block before handing it over (tp_retire_blk_tov). Default 1 ms. */
  retireMs?: number;
  /** Ask for the kernel's virtio_net_hdr per frame (PACKET_VNET_HDR). Default true. */
  vnetHeader?: boolean;
  /**
   * 2 (default): TPACKET_V2, fixed frame slots of frameBytes, one wake-up per frame, so a lone
   * frame is handed over at once; a frame too big for a slot (a GSO super-frame) is read whole
   * from the socket queue (PACKET_COPY_THRESH). 3: TPACKET_V3, variable-size frames in blocks
   * handed over when full or after retireMs: fewer wake-ups, but at low rates every frame waits
   * for the block timeout (measured here: milliseconds; the kernel's timer is jiffy-granular).
   */
  tpacketVersion?: 2 | 3;
  /** V2 frame slot size (header + frame); frames that do not fit take the copy path. Default 2048. */
  frameBytes?: number;
  /**
   * PACKET_FANOUT group (1..65535) this socket joins with PACKET_FANOUT_HASH, so that workers
   * share the interface a flow at a time; 0 or absent: no group (one worker).
   */
  fanoutGroup?: number;
  /**
   * TPACKET_V2: read frames in place in the ring (default true). false copies every frame to its
   * slot as V3 does, and makes no frame views: only to measure what the copy costs.
   */
  inPlace?: boolean;
}

export interface RingStats {
  received: number;
  dropped: number;
  freezes: number;
  blocks: number;
  callbackErrors: number;
}

/** Where the kernel puts frames in a TPACKET_V2 ring: what one view per ring frame needs. */
export interface RingFrameLayout {
  /** Ring frames that get a view (0: none, TPACKET_V3). */
  frameCount: number;
  framesPerBlock: number;
  frameBytes: number;
  blockBytes: number;
  /** tp_mac of an Ethernet frame in its ring frame (af_packet.c tpacket_rcv: 66, or 76 with PACKET_VNET_HDR). */
  macOffset: number;
}

interface NativeRing extends RingFrameLayout {
  readonly ring: Buffer;
  /** TPACKET_V2: the whole mapped ring. */
  readonly mapped?: Buffer;
  readonly vnetHeader: boolean;
  readonly ifindex: number;
  /** The socket's fd (the worker pool keeps its own on it while a worker restarts). */
  readonly fd: number;
  start(onBatch: (count: number) => void, onError: (err: unknown) => void): void;
  setFilter(filter: string): void;
  stats(): RingStats;
  takeError(): unknown;
  close(): void;
}

interface NativeRingAddon {
  Ring: new (
    opts: { device: string; filter: string; batchSize: number; slotSize: number; blockSize: number; blockCount: number; retireMs: number; vnetHeader: number; version: number; frameSize: number; fanoutGroup: number; inPlace: number },
    frames: Buffer,
    meta: Uint32Array,
  ) => NativeRing;
  META_WORDS: number;
  V2_MAC_OFFSET: number;
  V2_VNET_MAC_OFFSET: number;
  walkBlock(block: Uint8Array, vnet: boolean, slotSize: number, frames: Buffer, meta: Uint32Array): number;
  walkFramesV2(area: Uint8Array, frameSize: number, vnet: boolean, slotSize: number, frames: Buffer, meta: Uint32Array): number;
}

export const DEFAULT_BLOCK_BYTES = 128 * 1024;
export const DEFAULT_RETIRE_MS = 1;

/** Where the ring addon is expected; SLUICE_RING_ADDON overrides. */
export function ringAddonPath(): string {
  return process.env.SLUICE_RING_ADDON ?? join(packageRoot(), 'src', 'dataplane', 'native', 'build', 'Release', 'sluice_ring.node');
}

let addon: NativeRingAddon | null = null;

/** The loaded addon; throws a clear error when it is not built. */
export function ringAddon(): NativeRingAddon {
  if (addon !== null) return addon;
  const path = ringAddonPath();
  if (!existsSync(path)) throw new Error(`the ring capture addon is not built (${path} is missing): run \`${ADDON_BUILD_COMMAND}\` (needs libpcap-dev)`);
  const a = createRequire(import.meta.url)(path) as NativeRingAddon;
  if (a.META_WORDS !== RING_META_WORDS) throw new Error(`ring addon ${path} is stale (META_WORDS ${a.META_WORDS}, expected ${RING_META_WORDS}): rebuild it`);
  addon = a;
  return a;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export class RingCapture {
  readonly frames: Buffer;
  readonly meta: Uint32Array;
  readonly slotSize: number;
  readonly batchSize: number;
  readonly device: string;
  /** V3: the mapped ring; V2: the buffer a frame too big for its slot is read into. Frames with F_IN_RING are read here until onBatch returns. */
  readonly ring: Buffer;
  readonly tpacketVersion: 2 | 3;
  /** False when the kernel refused PACKET_VNET_HDR: no checksum offsets, no GSO sizes. */
  /** The capture socket's fd, valid until close(). */
  readonly fd: number;
  readonly vnetHeader: boolean;
  /**
   * TPACKET_V2: one view per ring frame over the mapped ring, byte 0 at the frame's first byte,
   * made once here (bufferBytes / frameBytes views, about 110 bytes of heap each); a frame with
   * F_IN_PLACE is frameViews[meta M_RING_FRAME]. Empty for V3.
   */
  readonly frameViews: Buffer[];
  readonly blockBytes: number;
  readonly blockCount: number;
  #handle: NativeRing;
  #closed = false;
  #failed = false;
  #lastError: Error | null = null;

  constructor(opts: RingCaptureOptions) {
    const a = ringAddon();
    const block = opts.blockBytes ?? DEFAULT_BLOCK_BYTES;
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1 || opts.batchSize > 65536) throw new RangeError(`batchSize must be 1..65536, got ${opts.batchSize}`);
    if (!Number.isInteger(opts.slotSize) || opts.slotSize < 64 || opts.slotSize > 262144) throw new RangeError(`slotSize must be 64..262144, got ${opts.slotSize}`);
    this.slotSize = opts.slotSize;
    this.batchSize = opts.batchSize;
    this.device = opts.device;
    this.blockBytes = block;
    this.tpacketVersion = opts.tpacketVersion ?? 2;
    this.blockCount = Math.max(4, Math.min(65536, Math.floor(opts.bufferBytes / block)));
    this.frames = Buffer.allocUnsafeSlow(this.batchSize * this.slotSize);
    this.meta = new Uint32Array(this.batchSize * RING_META_WORDS);
    this.#handle = new a.Ring(
      {
        device: opts.device,
        filter: opts.filter,
        batchSize: this.batchSize,
        slotSize: this.slotSize,
        blockSize: block,
        blockCount: this.blockCount,
        retireMs: opts.retireMs ?? DEFAULT_RETIRE_MS,
        vnetHeader: opts.vnetHeader === false ? 0 : 1,
        version: this.tpacketVersion,
        frameSize: opts.frameBytes ?? 2048,
        fanoutGroup: opts.fanoutGroup ?? 0,
        inPlace: opts.inPlace === false ? 0 : 1,
      },
      this.frames,
      this.meta,
    );
    this.ring = this.#handle.ring;
    this.vnetHeader = this.#handle.vnetHeader;
    this.fd = this.#handle.fd;
    const mapped = this.#handle.mapped;
    this.frameViews = mapped === undefined ? [] : ringFrameViews(mapped, this.#handle);
  }

  /** Starts delivering batches. onError gets exceptions thrown by onBatch and a capture failure (code ECAPTURE, after which capture stops). */
  start(onBatch: (count: number) => void, onError?: (err: Error) => void): void {
    if (this.#closed) throw new Error(`capture ring on ${this.device} is closed`);
    this.#handle.start(onBatch, (err: unknown) => {
      const e = toError(err);
      if ((e as NodeJS.ErrnoException).code === 'ECAPTURE') this.#failed = true;
      this.#lastError = e;
      if (onError) onError(e);
      else process.emitWarning(e, { code: 'SLUICE_CAPTURE', detail: `capture ring on ${this.device}` });
    });
  }

  /** Swaps the BPF filter atomically; on a bad filter it throws and the old one stays. */
  setFilter(filter: string): void {
    if (this.#closed) throw new Error(`capture ring on ${this.device} is closed`);
    this.#handle.setFilter(filter);
  }

  stats(): RingStats {
    return this.#handle.stats();
  }

  get failed(): boolean {
    return this.#failed;
  }

  get lastError(): Error | null {
    const stranded = this.#closed ? null : this.#handle.takeError();
    if (stranded !== null && stranded !== undefined) this.#lastError = toError(stranded);
    return this.#lastError;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handle.close();
  }
}

/**
 * One view per ring frame of a TPACKET_V2 ring (`area`: the mapping, or a golden copy of it):
 * frame k's view starts at its macOffset and ends with its ring frame. Set-up only: allocates.
 */
export function ringFrameViews(area: Buffer, layout: RingFrameLayout): Buffer[] {
  const { frameCount, framesPerBlock, frameBytes, blockBytes, macOffset } = layout;
  if (frameCount === 0) return [];
  if (framesPerBlock < 1 || macOffset >= frameBytes || framesPerBlock * frameBytes > blockBytes) throw new RangeError(`ring frame layout does not fit: ${JSON.stringify(layout)}`);
  const blocks = Math.ceil(frameCount / framesPerBlock);
  const last = (blocks - 1) * blockBytes + ((frameCount - 1) % framesPerBlock + 1) * frameBytes;
  if (last > area.length) throw new RangeError(`ring frame layout needs ${last} bytes; the area has ${area.length}`);
  const views: Buffer[] = new Array<Buffer>(frameCount);
  for (let k = 0; k < frameCount; k++) {
    const start = Math.floor(k / framesPerBlock) * blockBytes + (k % framesPerBlock) * frameBytes;
    views[k] = area.subarray(start + macOffset, start + frameBytes);
  }
  return views;
}

/** Where the addon expects an Ethernet frame in a TPACKET_V2 ring frame: with and without PACKET_VNET_HDR. */
export function ringMacOffset(vnet: boolean): number {
  const a = ringAddon();
  return vnet ? a.V2_VNET_MAC_OFFSET : a.V2_MAC_OFFSET;
}

/** Runs the addon's frame walker over one block held in memory (golden-byte tests). */
export function walkRingBlock(block: Uint8Array, vnet: boolean, slotSize: number, frames: Buffer, meta: Uint32Array): number {
  return ringAddon().walkBlock(block, vnet, slotSize, frames, meta);
}

/**
 * Runs the addon's TPACKET_V2 frame reader over frame slots held in memory (golden-byte tests):
 * frames it reads in place stay in `area` (ring frame k at k * frameSize; views from
 * ringFrameViews with framesPerBlock = area.length / frameSize).
 */
export function walkRingFramesV2(area: Uint8Array, frameSize: number, vnet: boolean, slotSize: number, frames: Buffer, meta: Uint32Array): number {
  return ringAddon().walkFramesV2(area, frameSize, vnet, slotSize, frames, meta);
}
