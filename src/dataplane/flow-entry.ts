/**
 * What a flow table entry is, as the table's users see it: its states, kinds and MPTCP token
 * states, the table's limits and defaults, its options, and the decoded entry of the admin API.
 * The control byte's bit layout (CTL_*) is here too, read by flow-slots.ts and the table.
 */

export const FLOW_EMPTY = 0;
export const FLOW_ACTIVE = 1;
/** After a FIN or RST: kept for tcpClosingMs so the last ACKs and retransmits still reach the backend. */
export const FLOW_CLOSING = 2;

/** Entry kinds, for eviction preference and counters. */
export const FLOW_KIND_HALF_OPEN = 0;
export const FLOW_KIND_ESTABLISHED = 1;
export const FLOW_KIND_CLOSING = 2;
/** UDP and any protocol but TCP. */
export const FLOW_KIND_OTHER = 3;
export const FLOW_KIND_NAMES = ['half-open', 'established', 'closing', 'other'] as const;
export type FlowKindName = (typeof FLOW_KIND_NAMES)[number];

/** Per-flow MPTCP token state: none learned yet, holds its connection's token, or its token collided (not retried). */
export const FLOW_TOKEN_NONE = 0;
export const FLOW_TOKEN_HELD = 1;
export const FLOW_TOKEN_COLLIDED = 2;

/** Largest capacity: 2^24 flows (about 0.97 GB). */
export const FLOW_MAX_CAPACITY = 1 << 24;
/** Share of the capacity half-open entries may hold unless told otherwise. */
export const DEFAULT_HALF_OPEN_SHARE = 0.25;
/** Idle timeout of a half-open entry unless told otherwise. */
export const DEFAULT_HALF_OPEN_MS = 10_000;

// The control byte of a slot: bits 0-1 the state, bit 2 half-open, bits 3-4 the MPTCP token
// state, bit 5 IPv6.
export const STATE_MASK = 0x03;
export const CTL_HALF_OPEN = 0x04;
export const TOKEN_SHIFT = 3;
export const TOKEN_MASK = 0x18;
export const CTL_V6 = 0x20;

export interface FlowTimeouts {
  /** Idle timeout of an established TCP flow. */
  readonly tcpIdleMs: number;
  /** Idle timeout of a TCP flow after a FIN or RST. */
  readonly tcpClosingMs: number;
  /** Idle timeout of UDP and any other protocol. */
  readonly udpIdleMs: number;
  /** Idle timeout of a half-open TCP flow (only SYNs seen). Default DEFAULT_HALF_OPEN_MS. */
  readonly halfOpenMs?: number;
}

export interface FlowTableOptions {
  /** Share of the capacity half-open entries may hold, in (0, 1]. Default 0.25. */
  halfOpenShare?: number;
  /** Allocate the table in a SharedArrayBuffer (ignored with buffer or attach). */
  shared?: boolean;
  /** Format this buffer (at least FlowTable.bytesFor(capacity) bytes; its old contents are erased). */
  buffer?: ArrayBufferLike;
  /** The buffer given as `buffer` is known to be all zeros (a new file): skip erasing it, which would touch every page. */
  bufferZeroed?: boolean;
  /** Attach to the table already in this buffer: its flows are kept; the given timeouts apply from now on. */
  attach?: ArrayBufferLike;
  /** The flow hash seed the caller uses; recorded in the header, and on attach it must match the recorded one. */
  hashSeed?: number;
  /** Wall-clock ms of relative time 0 for a new table (default Date.now()); on attach, "now" for the clock check. */
  epochMs?: number;
  /**
   * false: the previous policy, for comparison (tests, benchmarks): half-open entries get no
   * share and the TCP idle timeout, and eviction takes the least recently seen entry of any kind.
   * Default true.
   */
  floodProtection?: boolean;
}

/** One flow, decoded for the admin API and the CLI (allocated; not for the packet path). */
export interface FlowEntryInfo {
  slot: number;
  ipVersion: 4 | 6;
  protocol: number;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  backendId: number;
  serviceIndex: number;
  generation: number;
  ageMs: number;
  idleMs: number;
  state: 'active' | 'closing';
  kind: FlowKindName;
}
