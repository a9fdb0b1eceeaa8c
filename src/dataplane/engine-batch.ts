import { BatchCapture, PacketTx } from './capture-batch.js';
import { Drop } from '../packet/drop-reasons.js';
import { G } from './contract/counters.js';
import { FRAME_SLOT_BYTES } from './contract/limits.js';
import type { CaptureEngine, CaptureStats, EngineOptions } from './engine.js';
import { slotViews } from './slot-views.js';
import { txPathFromEnv } from './tx-path.js';

const TRUNCATED = 0x80000000;

/**
 * Sluice's own addon: one JS call per batch of at most batchSize frames, then back to the event
 * loop (timers and IPC keep running under a flood), one sendmmsg per batch.
 */
export class BatchEngine implements CaptureEngine {
  readonly name = 'batch' as const;
  /** libpcap does not pass TP_STATUS_CSUMNOTREADY on: partial checksums leave as they came. */
  readonly seesChecksumStatus = false;
  readonly #opts: EngineOptions;
  readonly #rx: BatchCapture;
  readonly #tx: PacketTx;
  readonly #rxSlots: Buffer[];
  readonly #txSlots: Buffer[];

  constructor(opts: EngineOptions) {
    this.#opts = opts;
    this.#rx = new BatchCapture({
      device: opts.interface,
      filter: opts.filter,
      bufferBytes: opts.bufferBytes,
      batchSize: opts.batchSize,
      slotSize: FRAME_SLOT_BYTES,
      immediate: true,
      direction: 'in',
    });
    try {
      this.#tx = new PacketTx({ device: opts.egressInterface, batchSize: opts.batchSize, slotSize: FRAME_SLOT_BYTES, ...txPathFromEnv() });
    } catch (e) {
      this.#rx.close();
      throw e;
    }
    // One view per slot, made once: the hot path never slices.
    this.#rxSlots = slotViews(this.#rx.frames, this.#rx.batchSize, this.#rx.slotSize);
    this.#txSlots = this.#tx.slots; // with a TX ring these move after every flush
  }

  /** The transmit path: sendmmsg or tx-ring, +qdisc-bypass. */
  get transmit(): string {
    return this.#tx.path;
  }

  start(): void {
    const fwd = this.#opts.forwarder;
    const c = fwd.counters;
    const lengths = this.#rx.lengths;
    const txLengths = this.#tx.lengths;
    const rxSlots = this.#rxSlots;
    const txSlots = this.#txSlots;
    const tx = this.#tx;
    this.#rx.start((count: number) => {
      const now = Date.now();
      let n = 0;
      c[G.batches]++;
      for (let i = 0; i < count; i++) {
        const len = lengths[i];
        if ((len & TRUNCATED) !== 0) {
          c[G.rxFrames]++;
          fwd.countDrop(Drop.capture_truncated);
          continue;
        }
        c[G.csumUnverifiable]++;
        const out = fwd.forward(rxSlots[i], len, txSlots[n], now);
        if (out > 0) txLengths[n++] = out;
      }
      if (n > 0) {
        const sent = tx.flush(n);
        c[G.txFrames] += sent;
        if (sent < n) {
          c[G.txErrors] += n - sent;
          for (let k = sent; k < n; k++) fwd.countDrop(Drop.tx_error);
        }
        for (let k = 0; k < sent; k++) c[G.txBytes] += txLengths[k];
      }
    });
  }

  setFilter(filter: string): void {
    this.#rx.setFilter(filter);
  }

  stats(): CaptureStats {
    return this.#rx.stats();
  }

  sendFrame(buf: Buffer, len: number): boolean {
    return this.#tx.sendOne(buf, len);
  }

  close(): void {
    this.#rx.close();
    this.#tx.close();
  }
}
