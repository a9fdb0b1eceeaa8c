import type { Forwarder } from './forwarder.js';

export interface CaptureStats {
  received: number;
  dropped: number;
  ifDropped: number;
}

/** A way of getting frames in and out: Sluice's batching addon or the stock cap package. */
export interface CaptureEngine {
  readonly name: 'batch' | 'cap';
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
}
