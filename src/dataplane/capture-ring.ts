// Sluice's AF_PACKET receive ring (TPACKET_V2 by default, or V3) over its own Node-API addon
// (native/sluice_ring.c).
//
// The addon reads the frames the kernel handed over, copies each frame of at most slotSize bytes
// into its slot of `frames`, writes RING_META_WORDS status words per frame into `meta` (see
// ring-frame.ts) and calls onBatch(count) once per batch, at most one batch per event-loop turn.
// A bigger frame (a GSO super-frame) is read in `ring` (F_IN_RING) until onBatch returns.
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
}

export interface RingStats {
  received: number;
  dropped: number;
  freezes: number;
  blocks: number;
  callbackErrors: number;
}

interface NativeRing {
  readonly ring: Buffer;
  readonly vnetHeader: boolean;
  readonly ifindex: number;
  start(onBatch: (count: number) => void, onError: (err: unknown) => void): void;
  setFilter(filter: string): void;
  stats(): RingStats;
  takeError(): unknown;
  close(): void;
}

interface NativeRingAddon {
  Ring: new (
    opts: { device: string; filter: string; batchSize: number; slotSize: number; blockSize: number; blockCount: number; retireMs: number; vnetHeader: number; version: number; frameSize: number; fanoutGroup: number },
    frames: Buffer,
    meta: Uint32Array,
  ) => NativeRing;
  META_WORDS: number;
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
  readonly vnetHeader: boolean;
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
      },
      this.frames,
      this.meta,
    );
    this.ring = this.#handle.ring;
    this.vnetHeader = this.#handle.vnetHeader;
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

/** Runs the addon's frame walker over one block held in memory (golden-byte tests). */
export function walkRingBlock(block: Uint8Array, vnet: boolean, slotSize: number, frames: Buffer, meta: Uint32Array): number {
  return ringAddon().walkBlock(block, vnet, slotSize, frames, meta);
}

/** Runs the addon's TPACKET_V2 frame reader over frame slots held in memory (golden-byte tests). */
export function walkRingFramesV2(area: Uint8Array, frameSize: number, vnet: boolean, slotSize: number, frames: Buffer, meta: Uint32Array): number {
  return ringAddon().walkFramesV2(area, frameSize, vnet, slotSize, frames, meta);
}
