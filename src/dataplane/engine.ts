import type { Forwarder } from './forwarder.js';

export interface CaptureStats {
  received: number;
  dropped: number;
  ifDropped: number;
}

/** Capture engine names: Sluice's AF_PACKET ring (default), its libpcap batching addon, the stock cap package. */
export type CaptureEngineName = 'ring' | 'batch' | 'cap';

/** A way of getting frames in and out: Sluice's AF_PACKET ring, its libpcap batching addon or the stock cap package. */
export interface CaptureEngine {
  readonly name: CaptureEngineName;
  /**
   * Whether the engine sees the kernel's per-frame checksum status (TP_STATUS_CSUMNOTREADY) and
   * so can complete partial checksums. Engines that cannot (libpcap) count the frames they
   * pass on unchecked in G.csumUnverifiable.
   */
  readonly seesChecksumStatus: boolean;
  /** How frames leave (sendmmsg, tx-ring, +qdisc-bypass), for the startup log and status; absent: the engine's own way. */
  readonly transmit?: string;
  /** The capture socket's fd, for the worker pool to hold while a worker restarts (worker-pool.ts); absent: not a fanout member. */
  readonly captureFd?: number;
  start(): void;
  setFilter(filter: string): void;
  stats(): CaptureStats;
  /** Send one frame now, outside a batch (frames released after an owner query). */
  sendFrame(buf: Buffer, len: number): boolean;
  close(): void;
}

export interface EngineOptions {
  forwarder: Forwarder;
  interface: string;
  egressInterface: string;
  filter: string;
  bufferBytes: number;
  batchSize: number;
  /** PACKET_FANOUT group shared by the workers of one interface (ring engine only); absent: none. */
  fanoutGroup?: number;
}
