import type { DataplaneInit, DataplaneSpec } from './spec.js';

/** Control process -> data-plane process. */
export type ToDataplane =
  | { type: 'init'; init: DataplaneInit }
  | { type: 'generation'; spec: DataplaneSpec }
  | { type: 'flows'; requestId: number; limit: number; vip?: string; backendIds?: number[]; client?: string }
  | { type: 'flow-counts'; requestId: number }
  /** Cluster with sync: turn owner queries on (holdPackets per flow) or off. */
  | { type: 'owner-queries'; enabled: boolean; holdPackets: number }
  /** The owner's answer to an owner-query: a local backend id, or -1. */
  | { type: 'owner-answer'; qid: number; backendId: number }
  /** Send the publishable entries now (after a generation change). */
  | { type: 'publish-owners' }
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
  | { type: 'flow-counts'; requestId: number; counts: Map<number, number> }
  | { type: 'owner-query'; qid: number; kind: number; key: Uint8Array }
  /** Entries for the owners: kind 0 flow / 1 token, key bytes, local backend id. */
  | { type: 'owner-entries'; entries: { kind: number; key: Uint8Array; backendId: number }[] };
