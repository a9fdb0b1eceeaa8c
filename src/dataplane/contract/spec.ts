import type { Forwarding } from '../../config/types.js';

/**
 * What the control side hands the data plane for one table generation: everything resolved
 * (addresses as bytes, next-hop MACs, Maglev tables as backend ids), so the data plane makes no
 * decision that is not per packet.
 */
export interface ServiceSpec {
  /** Stable id while a service of this name exists (counter slot). */
  id: number;
  name: string;
  vip: Uint8Array;
  protocol: number;
  /** 0 = all ports. */
  port: number;
  forwarding: Forwarding;
  /** Maglev table: backend ids, -1 where no backend can take new flows. */
  table: Int32Array;
  /** Steer MP_JOIN SYNs by token (issue: MPTCP-aware). */
  mptcp: boolean;
  /** What to do with an MP_JOIN whose token is unknown. */
  mptcpUnknownJoin: 'drop' | 'hash';
  /** Echo requests to the VIP (the VIP's first service decides); absent = 'reply'. */
  icmpEcho?: 'reply' | 'forward' | 'drop';
  /** ICMP errors quoting this service's packets; absent = 'forward'. */
  icmpErrors?: 'forward' | 'drop';
  /** Same on every instance for the same (vip, protocol, port): seeds per-service hashes that must agree across instances. */
  stableHash: number;
  /** Client affinity by source prefix; null = every flow hashed on its 5-tuple. */
  affinity: { timeoutMs: number; prefix4: number; prefix6: number } | null;
}

export interface BackendSpec {
  /** Stable id while this (service, address) exists; flows record it. */
  id: number;
  serviceId: number;
  address: string;
  addr: Uint8Array;
  /** MAC of the next hop toward the backend on the egress interface; null = unresolved (counted drops). */
  nextHopMac: Uint8Array | null;
  weight: number;
  /** In this generation's Maglev table (takes new flows). */
  serving: boolean;
  /** Failed its health check or its next hop: its flows move to the current table too (a draining backend keeps them). */
  down: boolean;
}

export interface DataplaneSpec {
  generation: number;
  hashSeed: number;
  services: ServiceSpec[];
  backends: BackendSpec[];
  egressMac: Uint8Array;
  egressMtu: number;
  encapSource4: Uint8Array | null;
  encapSource6: Uint8Array | null;
  /** BPF filter for the capture handle (derived from the services). */
  filter: string;
  /** Tagging of frames leaving on the egress segment (config `vlan.egress`); default 'untagged'. */
  vlanEgress?: VlanEgress;
  /** Fragment table and early-fragment hold (config `fragments`); defaults in fragment-table.ts / fragment-hold.ts. */
  fragments?: { capacity: number; timeoutMs: number; holdMs: number };
}

/** 'untagged': every tag removed; 'keep': the frame's own tags (dsr-l2; ipip has none to keep); a number: that 802.1Q VLAN id. */
export type VlanEgress = 'untagged' | 'keep' | number;

export interface DataplaneInit {
  engine: 'ring' | 'batch' | 'cap';
  interface: string;
  egressInterface: string;
  bufferBytes: number;
  batchSize: number;
  flowCapacity: number;
  tcpIdleMs: number;
  tcpClosingMs: number;
  udpIdleMs: number;
  /** Idle timeout of a half-open TCP flow; absent = the flow table's default. */
  halfOpenMs?: number;
  /** Half-open share and kind-aware eviction in the flow table; absent = on. */
  floodProtection?: boolean;
  tokenCapacity: number;
  /** Packet workers (dataplane.workers, 'auto' already resolved); absent: 1. */
  workers?: number;
  /**
   * The flow table's file (handover.ts), mapped shared; attach: take over the table in it (a
   * restart or replacement) instead of starting empty. Absent: the table is in private memory.
   */
  flowTable?: { path: string; attach: boolean };
  /** false (SLUICE_HANDOVER=off): exit when the control process's channel closes, as before handover existed. Default true. */
  outliveControl?: boolean;
  spec: DataplaneSpec;
}
