import type { DataplaneInit, DataplaneSpec } from './spec.js';

/** Control process -> data-plane process. */
export type ToDataplane =
  | { type: 'init'; init: DataplaneInit }
  | { type: 'generation'; spec: DataplaneSpec }
  | { type: 'flows'; requestId: number; limit: number; vip?: string; backendIds?: number[]; client?: string }
  | { type: 'flow-counts'; requestId: number }
  | { type: 'publish' }
  | { type: 'shutdown' };

export interface FlowRow {
  protocol: 'tcp' | 'udp';
  client: string;
  clientPort: number;
  vip: string;
  port: number;
  backendId: number;
  serviceId: number;
  ageMs: number;
  idleMs: number;
  state: 'active' | 'closing';
}

/** Data-plane process -> control process. */
export type FromDataplane =
  | { type: 'ready'; engine: string }
  | { type: 'fatal'; message: string }
  | { type: 'applied'; generation: number }
  | { type: 'apply-failed'; generation: number; message: string }
  | { type: 'counters'; counters: Float64Array }
  | { type: 'flows'; requestId: number; rows: FlowRow[]; total: number }
  | { type: 'flow-counts'; requestId: number; counts: Map<number, number> };
