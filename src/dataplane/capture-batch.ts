// Batched packet capture and transmit over Sluice's own Node-API addon (native/sluice_pcap.c).
//
// Receive: one shared area, `frames` (batchSize slots of slotSize bytes) + `lengths`. The addon
// fills slots 0..count-1 and calls onBatch(count) once per batch; at most one batch per event
// loop turn, so timers and other I/O keep running under overload. The area is overwritten by
// the next batch: copy out anything needed later before returning.
//
// Transmit: fill `slots[i]`/`lengths[i]` for 0..count-1, then flush(count) sends them with one
// sendmmsg on an AF_PACKET socket bound to the device, or (txRing) with one send() kick of a
// mapped TX ring whose frames the slots are (native/sluice_tx_ring.c).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { slotViews } from './slot-views.js';

/** lengths[i] & TRUNCATED: the frame was longer than the slot or the snap length. */
export const TRUNCATED = 0x8000_0000;
/** lengths[i] & LENGTH_MASK: bytes of the frame stored in slot i. */
export const LENGTH_MASK = 0x7fff_ffff;

export const DEFAULT_SLOT_SIZE = 10240;
export const ADDON_BUILD_COMMAND = 'npx node-gyp rebuild --directory src/dataplane/native';

export interface CaptureStats {
  received: number;
  dropped: number;
  ifDropped: number;
}

export interface InterfaceInfo {
  index: number;
  mac: Buffer;
  mtu: number;
}

export interface BatchCaptureOptions {
  device: string;
  /** BPF filter (pcap syntax), compiled with optimisation on. */
  filter: string;
  /** Kernel ring size (pcap_set_buffer_size). */
  bufferBytes: number;
  /** Most frames handed to one onBatch call (and copied per event-loop turn). */
  batchSize: number;
  /** Bytes per slot in `frames`; also the snap length. Default 10240. */
  slotSize?: number;
  /** Deliver each frame as soon as it arrives (default true). false: kernel batches frames in
   *  blocks, retired at the latest after timeoutMs: much less CPU at moderate rates. */
  immediate?: boolean;
  /** Block timeout when immediate is false (default 2 ms). */
  timeoutMs?: number;
  /** 'in' (default) never captures frames sent from this host, including our own PacketTx. */
  direction?: 'in' | 'inout';
  promisc?: boolean;
}

export interface PacketTxOptions {
  device: string;
  batchSize: number;
  slotSize?: number;
  /** SO_SNDTIMEO of the blocking socket (default 2 ms): longest a full socket buffer may stall
   *  a flush before the rest of the batch is dropped and counted in errors. */
  sendTimeoutMs?: number;
  /** SO_SNDBUF(FORCE) (default 4 MiB). */
  sendBufferBytes?: number;
  /** Write output straight into a mapped PACKET_TX_RING (TPACKET_V2) and send each batch with
   *  one send() kick, instead of sendmmsg from a process buffer (default false). */
  txRing?: boolean;
  /** PACKET_QDISC_BYPASS: frames skip the egress qdisc (default false). */
  qdiscBypass?: boolean;
}

/** How a TX ring is laid out in memory (PacketTx.ring). */
export interface TxRingLayout {
  frames: number;
  frameBytes: number;
  framesPerBlock: number;
  blockBytes: number;
  blocks: number;
  /** Bytes the ring maps (the kernel allocates them when the ring is set up). */
  mappedBytes: number;
}

// ---- the addon's shape --------------------------------------------------------------------

interface NativeCaptureOptions {
  device: string;
  filter: string;
  bufferBytes: number;
  batchSize: number;
  slotSize: number;
  immediate: boolean;
  timeoutMs: number;
  direction: number;
  promisc: boolean;
}

interface NativeCaptureStats extends CaptureStats {
  callbackErrors: number;
}

interface NativeCapture {
  readonly warning: string | null;
  start(onBatch: (count: number) => void, onError: (err: unknown) => void): void;
  setFilter(filter: string): void;
  stats(): NativeCaptureStats;
  takeError(): unknown;
  close(): void;
}

interface NativeTxOptions {
  device: string;
  batchSize: number;
  slotSize: number;
  sendTimeoutMs: number;
  sendBufferBytes: number;
  txRing: boolean;
  qdiscBypass: boolean;
}

interface NativeTx {
  /** txRing: an external Buffer over the mapped ring, frame j's data at slotOffsets[j]. */
  readonly frames?: Buffer;
  readonly slotOffsets?: Uint32Array;
  readonly ring?: TxRingLayout;
  readonly ifindex: number;
  readonly mtu: number;
  readonly mac: Buffer;
  readonly sent: number;
  readonly errors: number;
  flush(count: number): number;
  sendOne(buf: Uint8Array, len: number): boolean;
  counters(): { sent: number; errors: number; lastError: string | null };
  close(): void;
}

interface NativeAddon {
  Capture: new (opts: NativeCaptureOptions, frames: Buffer, lengths: Uint32Array) => NativeCapture;
  Tx: new (opts: NativeTxOptions, frames: Buffer | null, lengths: Uint32Array, cursor?: Uint32Array) => NativeTx;
  interfaceInfo(name: string): InterfaceInfo & { hwType: number };
  pcapVersion(): string;
}

// ---- loading ------------------------------------------------------------------------------

/** The package root: the nearest directory above this file holding package.json. Works from
 *  src/dataplane (vitest, tsx) and from dist/src/dataplane (compiled). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 16; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`capture-batch: no package.json above ${fileURLToPath(import.meta.url)}`);
}

/** Where the addon is expected; SLUICE_PCAP_ADDON overrides. */
export function addonPath(): string {
  return (
    process.env.SLUICE_PCAP_ADDON ??
    join(packageRoot(), 'src', 'dataplane', 'native', 'build', 'Release', 'sluice_pcap.node')
  );
}

let addon: NativeAddon | null = null;
let loadError: string | null = null;

function tryLoad(): NativeAddon | null {
  if (addon !== null || loadError !== null) return addon;
  let path = '(unknown)';
  try {
    path = addonPath();
    if (!existsSync(path)) {
      loadError = `the capture addon is not built (${path} is missing): run \`${ADDON_BUILD_COMMAND}\` (needs libpcap-dev)`;
      return null;
    }
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (err) {
    loadError = `cannot load the capture addon ${path}: ${err instanceof Error ? err.message : String(err)}`;
  }
  return addon;
}

function native(): NativeAddon {
  const a = tryLoad();
  if (a === null) throw new Error(loadError ?? 'capture addon unavailable');
  return a;
}

export function nativeUnavailableReason(): string | null {
  tryLoad();
  return loadError;
}

/** libpcap's version string (e.g. "libpcap version 1.10.3 ..."). */
export function pcapVersion(): string {
  return native().pcapVersion();
}

/** Index, MAC and MTU of an interface in this process's network namespace. No privileges needed. */
export function interfaceInfo(name: string): InterfaceInfo {
  const info = native().interfaceInfo(name);
  return { index: info.index, mac: info.mac, mtu: info.mtu };
}

function positiveInt(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw new RangeError(`${name} must be an integer in 1..${max}, got ${v}`);
  return v;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

// ---- capture ------------------------------------------------------------------------------

export class BatchCapture {
  readonly frames: Buffer;
  readonly lengths: Uint32Array;
  readonly slotSize: number;
  readonly batchSize: number;
  readonly device: string;
  /** A pcap_activate warning (e.g. promiscuous mode unsupported), or null. */
  readonly warning: string | null;
  #handle: NativeCapture;
  #closed = false;
  #lastError: Error | null = null;
  #errors = 0;
  #onError: ((err: Error) => void) | null = null;
  #warned = false;
  #failed = false;

  constructor(opts: BatchCaptureOptions) {
    const slotSize = positiveInt('slotSize', opts.slotSize ?? DEFAULT_SLOT_SIZE, 256 * 1024);
    if (slotSize < 64) throw new RangeError(`slotSize must be >= 64, got ${slotSize}`);
    const batchSize = positiveInt('batchSize', opts.batchSize, 65536);
    const bufferBytes = positiveInt('bufferBytes', opts.bufferBytes, 2 ** 31 - 1);
    const a = native();
    this.slotSize = slotSize;
    this.batchSize = batchSize;
    this.device = opts.device;
    // allocUnsafeSlow: a buffer of its own (not a pool slice) that the addon pins while open.
    this.frames = Buffer.allocUnsafeSlow(batchSize * slotSize);
    this.lengths = new Uint32Array(batchSize);
    this.#handle = new a.Capture(
      {
        device: opts.device,
        filter: opts.filter,
        bufferBytes,
        batchSize,
        slotSize,
        immediate: opts.immediate ?? true,
        timeoutMs: opts.timeoutMs ?? 2,
        direction: opts.direction === 'inout' ? 1 : 0,
        promisc: opts.promisc ?? false,
      },
      this.frames,
      this.lengths,
    );
    this.warning = this.#handle.warning;
  }

  /**
   * Starts delivering batches: onBatch(count) with frames in slots 0..count-1. An exception
   * thrown by onBatch does not stop capture: it is counted (callbackErrors), kept (lastError)
   * and passed to onError, which also receives a capture failure (after which capture stops).
   * Without onError the first such error is emitted as a process warning.
   */
  start(onBatch: (count: number) => void, onError?: (err: Error) => void): void {
    this.#assertOpen();
    this.#onError = onError ?? null;
    this.#handle.start(onBatch, (err: unknown) => this.#report(err));
  }

  /** Swaps the BPF filter at runtime. On a bad filter it throws and the old filter stays. */
  setFilter(filter: string): void {
    this.#assertOpen();
    this.#handle.setFilter(filter);
  }

  stats(): CaptureStats {
    this.#assertOpen();
    const s = this.#handle.stats();
    return { received: s.received, dropped: s.dropped, ifDropped: s.ifDropped };
  }

  /** Exceptions thrown by onBatch so far. */
  get callbackErrors(): number {
    return this.#errors;
  }

  /** The last error from onBatch or from the capture itself, or null. */
  get lastError(): Error | null {
    const stranded = this.#closed ? null : this.#handle.takeError();
    if (stranded !== null && stranded !== undefined) this.#lastError = toError(stranded);
    return this.#lastError;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True once the capture itself failed (e.g. the interface vanished) and stopped delivering. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Stops capture and releases the handle. Safe to call from inside onBatch, and twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handle.close();
  }

  #report(err: unknown): void {
    const e = toError(err);
    const fatal = (e as NodeJS.ErrnoException).code === 'ECAPTURE';
    if (fatal) this.#failed = true;
    else this.#errors++;
    this.#lastError = e;
    if (this.#onError !== null) {
      this.#onError(e);
    } else if (fatal || !this.#warned) {
      this.#warned = true;
      process.emitWarning(e, { code: 'SLUICE_CAPTURE', detail: `capture on ${this.device}` });
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error(`capture on ${this.device} is closed`);
  }
}

// ---- transmit -----------------------------------------------------------------------------

export class PacketTx {
  /** The memory the slots are views of: a process buffer, or (txRing) the mapped ring. */
  readonly frames: Buffer;
  /** Where output frame i of the next flush goes: slots[i] (slotSize bytes), lengths[i]. With a
   *  TX ring the views move after every flush (they follow the kernel's ring head): index
   *  this array each time, never keep a view across a flush. */
  readonly slots: Buffer[];
  readonly lengths: Uint32Array;
  readonly slotSize: number;
  readonly batchSize: number;
  readonly device: string;
  readonly ifindex: number;
  readonly mac: Buffer;
  readonly mtu: number;
  /** The TX ring's layout, or null (sendmmsg). */
  readonly ring: TxRingLayout | null;
  readonly qdiscBypass: boolean;
  #handle: NativeTx;
  #closed = false;
  /** txRing: one view per ring frame, the kernel's head and how many frames from it are ours. */
  readonly #ringViews: Buffer[] = [];
  readonly #cursor = new Uint32Array(2);
  /** txRing: where slot i points while the kernel still holds its ring frame; flush moves what
   *  is written there into the ring if the frame came back by then, else drops and counts it.
   *  Not resident until a slot is first spilled. */
  readonly #spill: Buffer[] = [];

  constructor(opts: PacketTxOptions) {
    const slotSize = positiveInt('slotSize', opts.slotSize ?? DEFAULT_SLOT_SIZE, 256 * 1024);
    if (slotSize < 64) throw new RangeError(`slotSize must be >= 64, got ${slotSize}`);
    const batchSize = positiveInt('batchSize', opts.batchSize, 65536);
    const a = native();
    const txRing = opts.txRing ?? false;
    this.slotSize = slotSize;
    this.batchSize = batchSize;
    this.device = opts.device;
    this.qdiscBypass = opts.qdiscBypass ?? false;
    this.lengths = new Uint32Array(batchSize);
    // sendmmsg: the slots. TX ring: the spill slots (the ring itself is mapped by the addon).
    const own = Buffer.allocUnsafeSlow(batchSize * slotSize);
    this.#handle = new a.Tx(
      {
        device: opts.device,
        batchSize,
        slotSize,
        sendTimeoutMs: opts.sendTimeoutMs ?? 2,
        sendBufferBytes: opts.sendBufferBytes ?? 4 * 1024 * 1024,
        txRing,
        qdiscBypass: this.qdiscBypass,
      },
      own,
      this.lengths,
      this.#cursor,
    );
    this.ifindex = this.#handle.ifindex;
    this.mac = this.#handle.mac;
    this.mtu = this.#handle.mtu;
    const ringBuf = this.#handle.frames;
    const offsets = this.#handle.slotOffsets;
    if (!txRing) {
      this.frames = own;
      this.ring = null;
      this.slots = slotViews(own, batchSize, slotSize);
    } else {
      if (ringBuf === undefined || offsets === undefined || this.#handle.ring === undefined) {
        this.#handle.close();
        throw new Error(`the transmit addon did not map a TX ring on ${opts.device}`);
      }
      this.frames = ringBuf;
      this.ring = this.#handle.ring;
      for (let j = 0; j < offsets.length; j++) this.#ringViews.push(ringBuf.subarray(offsets[j], offsets[j] + slotSize));
      this.#spill = slotViews(own, batchSize, slotSize);
      this.slots = new Array<Buffer>(batchSize);
      this.#aim();
    }
  }

  /** Which transmit path this is, for logs and status: "sendmmsg", "tx-ring", "+qdisc-bypass". */
  get path(): string {
    return (this.ring !== null ? 'tx-ring' : 'sendmmsg') + (this.qdiscBypass ? '+qdisc-bypass' : '');
  }

  /** Sends slots 0..count-1 (lengths[i] bytes each, 14..slotSize). Returns how many the kernel
   *  took; the rest are counted in errors (bad length, MTU, no buffer space, timeout). With a
   *  TX ring, lengths[0..sent) then hold the lengths of the frames sent, in order. */
  flush(count: number): number {
    const sent = this.#handle.flush(count);
    if (this.ring !== null) this.#aim();
    return sent;
  }

  /** TX ring: point slot i at ring frame head+i while the kernel does not hold it, else at
   *  spill slot i. */
  #aim(): void {
    const views = this.#ringViews;
    const slots = this.slots;
    const frames = views.length;
    const window = this.#cursor[1];
    let f = this.#cursor[0];
    for (let i = 0; i < window; i++) {
      slots[i] = views[f];
      if (++f === frames) f = 0;
    }
    const spill = this.#spill;
    for (let i = window; i < slots.length; i++) slots[i] = spill[i];
  }

  /** Sends buf[0..len) now; false (and errors+1) if the kernel refused it. */
  sendOne(buf: Uint8Array, len: number): boolean {
    return this.#handle.sendOne(buf, len);
  }

  get sent(): number {
    return this.#handle.sent;
  }

  get errors(): number {
    return this.#handle.errors;
  }

  /** strerror text of the last send failure, or null. */
  get lastError(): string | null {
    return this.#handle.counters().lastError;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handle.close();
  }
}
