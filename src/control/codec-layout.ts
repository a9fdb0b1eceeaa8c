/**
 * Wire layout of the control plane: one message per UDP datagram, at most MAX_DATAGRAM_BYTES.
 * The constants, message types and entry checks below define it; codec-write.ts writes it and
 * codec-read.ts decodes it. Callers import all of it from codec.ts.
 *
 *   offset size  field (all integers big-endian)
 *        0    4  magic 0x534c4350 ("SLCP")
 *        4    1  version (1)
 *        5    1  type: 1 HEARTBEAT, 2 PUBLISH, 3 QUERY, 4 ANSWER
 *        6    2  body length
 *        8    4  sender: hashInstanceId(instance id) (src/hash/rendezvous.ts; unique per cluster,
 *                checked by validateClusterConfig)
 *       12    8  sender incarnation (random per process start)
 *       20    8  sequence (per sender incarnation, starts at 1, +1 per datagram sent to anyone)
 *       28    8  sender wall-clock timestamp, ms since the Unix epoch
 *       36    n  body
 *     36+n   16  HMAC-SHA256(cluster key, bytes 0 .. 36+n) truncated to 16 bytes
 *
 * Bodies:
 *   HEARTBEAT  generation u64 | backendSetHash u64 | liveCount u16 | liveCount x instance hash u32
 *   PUBLISH    entryCount u16 | entries | backendCount u8 | backends
 *                entry   = kind u8 | keyLen u8 | key | backendIndex u8 | ttlMs u32
 *                backend = nameLen u8 | service name (UTF-8) | addrLen u8 (4|16) | address
 *              ttlMs 0 withdraws the entry. Backends are a per-datagram dictionary: a burst of
 *              flows to a few backends costs 20 bytes per IPv4 flow entry.
 *   QUERY      queryId u32 | kind u8 | keyLen u8 | key
 *   ANSWER     queryId u32 | kind u8 | keyLen u8 | key | found u8
 *              [ttlMs u32 | nameLen u8 | service name | addrLen u8 | address]   (if found)
 * kind: 1 FLOW (key = canonical 5-tuple, 13 or 37 bytes, src/hash/murmur3.ts copyFlowKey),
 *       2 TOKEN (key = MPTCP token, 4 bytes big-endian),
 *       3 FRAGMENT (key = a fragmented datagram: ipVersion u8 | protocol u8 | identification u32 |
 *         source | destination, 14 or 38 bytes; src/dataplane/fragment-owner.ts).
 *
 * Backend identity on the wire is (service name, backend address bytes), never a per-instance
 * id: two instances that number their backends differently still agree on what an entry means.
 */
import { createHash } from 'node:crypto';
import { ipToBytes } from '../packet/address.js';
import { MAC_BYTES, type MessageAuthenticator, type ReplayGuard } from './auth.js';

export { MAC_BYTES };

export const MAGIC = 0x534c4350;
export const VERSION = 1;
export const HEADER_BYTES = 36;
export const MAX_DATAGRAM_BYTES = 1400;
export const MAX_BODY_BYTES = MAX_DATAGRAM_BYTES - HEADER_BYTES - MAC_BYTES;
/** Longest TTL a PUBLISH may carry (24 h); longer values are clamped by the receiver. */
export const MAX_TTL_MS = 86_400_000;
/** Longest service name on the wire (UTF-8 bytes). Config names are 1..63 characters. */
export const MAX_SERVICE_NAME_BYTES = 255;
/** Most instance hashes a HEARTBEAT carries. */
export const MAX_LIVE_VIEW = 256;

export type MessageTypeName = 'HEARTBEAT' | 'PUBLISH' | 'QUERY' | 'ANSWER';
export const MESSAGE_TYPES: readonly MessageTypeName[] = ['HEARTBEAT', 'PUBLISH', 'QUERY', 'ANSWER'];
export const MESSAGE_TYPE_CODE: Readonly<Record<MessageTypeName, number>> = { HEARTBEAT: 1, PUBLISH: 2, QUERY: 3, ANSWER: 4 };

export type RejectReason =
  | 'TRUNCATED'
  | 'BAD_MAGIC'
  | 'BAD_VERSION'
  | 'OVERSIZED'
  | 'BAD_LENGTH'
  | 'BAD_MAC'
  | 'REPLAYED'
  | 'STALE'
  | 'UNKNOWN_PEER'
  | 'UNKNOWN_TYPE'
  | 'MALFORMED_BODY';
export const REJECT_REASONS: readonly RejectReason[] = [
  'TRUNCATED',
  'BAD_MAGIC',
  'BAD_VERSION',
  'OVERSIZED',
  'BAD_LENGTH',
  'BAD_MAC',
  'REPLAYED',
  'STALE',
  'UNKNOWN_PEER',
  'UNKNOWN_TYPE',
  'MALFORMED_BODY',
];

/** What a flow-state entry is keyed by. */
export type EntryKind = 'flow' | 'token' | 'fragment';
export const ENTRY_KIND_CODE: Readonly<Record<EntryKind, number>> = { flow: 1, token: 2, fragment: 3 };
/** Key lengths of a FRAGMENT entry (IPv4, IPv6): distinct from a flow's and a token's, so a key's length names its kind. */
export const FRAGMENT_KEY_LENGTHS: readonly number[] = [14, 38];

/** A backend as every instance names it: the service's name and the backend's canonical address. */
export interface BackendIdentity {
  service: string;
  /** Canonical IPv4 or IPv6 text (RFC 5952), as in the validated config. */
  address: string;
}

/** One piece of flow state: key -> backend, valid for ttlMs (0 withdraws it). */
export interface SyncEntry {
  kind: EntryKind;
  /** Flow: canonical 5-tuple (13 or 37 bytes). Token: 4 bytes big-endian. Fragment: datagram key (14 or 38 bytes). */
  key: Uint8Array;
  backend: BackendIdentity;
  ttlMs: number;
}

export interface MessageHeader {
  type: MessageTypeName;
  /** hashInstanceId() of the sender's instance id. */
  sender: number;
  incarnation: bigint;
  sequence: bigint;
  timestampMs: number;
}

export interface HeartbeatBody {
  generation: number;
  backendSetHash: bigint;
  /** hashInstanceId() of every instance the sender considers live (itself included). */
  live: number[];
}
export interface PublishBody {
  entries: SyncEntry[];
}
export interface QueryBody {
  queryId: number;
  kind: EntryKind;
  key: Uint8Array;
}
export interface AnswerBody {
  queryId: number;
  kind: EntryKind;
  key: Uint8Array;
  found: boolean;
  backend?: BackendIdentity;
  /** Remaining lifetime of the entry at the answerer; 0 when not found. */
  ttlMs: number;
}

export type ControlMessage =
  | { type: 'HEARTBEAT'; header: MessageHeader; body: HeartbeatBody }
  | { type: 'PUBLISH'; header: MessageHeader; body: PublishBody }
  | { type: 'QUERY'; header: MessageHeader; body: QueryBody }
  | { type: 'ANSWER'; header: MessageHeader; body: AnswerBody };

export type DecodeResult = { ok: true; message: ControlMessage } | { ok: false; reason: RejectReason };

export interface DecodeContext {
  auth: MessageAuthenticator;
  replay: ReplayGuard;
  /** True if the sender hash belongs to a configured peer (not this instance). */
  isKnownSender(sender: number): boolean;
  /** Local wall clock, ms since the epoch. */
  nowMs: number;
}

// ---- identity helpers ---------------------------------------------------------------------

/** The 4-byte key of an MPTCP token (big-endian); its one definition is packet/token-key.ts. */
export { tokenKey } from '../packet/token-key.js';

/** True if `key` has a valid length for `kind`. */
export function validKeyLength(kind: EntryKind, length: number): boolean {
  if (kind === 'fragment') return length === 14 || length === 38;
  return kind === 'token' ? length === 4 : length === 13 || length === 37;
}

/** The kind implied by a key's length (4: token; 13 or 37: flow; 14 or 38: fragment), or undefined. */
export function kindOfKey(key: Uint8Array): EntryKind | undefined {
  if (key.length === 4) return 'token';
  if (key.length === 14 || key.length === 38) return 'fragment';
  if (key.length === 13 || key.length === 37) return 'flow';
  return undefined;
}

/**
 * An order-independent 64-bit digest of a backend set: SHA-256 over the sorted lines
 * "service|address|weight", first 8 bytes. Instances with the same set report the same value in
 * their heartbeats; a difference is a generation mismatch worth showing.
 */
export function backendSetHash(backends: Iterable<{ service: string; address: string; weight: number }>): bigint {
  const lines: string[] = [];
  for (const b of backends) lines.push(`${b.service}|${b.address}|${b.weight}`);
  lines.sort();
  return createHash('sha256').update(lines.join('\n')).digest().readBigUInt64BE(0);
}

/** Why a SyncEntry cannot be sent, or undefined if it can. */
export function checkEntry(e: SyncEntry): string | undefined {
  if (e.kind !== 'flow' && e.kind !== 'token' && e.kind !== 'fragment') return `kind ${String(e.kind)}: expected "flow", "token" or "fragment"`;
  if (!(e.key instanceof Uint8Array) || !validKeyLength(e.kind, e.key.length)) {
    return `${e.kind} key of ${e.key?.length} bytes: expected ${e.kind === 'token' ? '4' : e.kind === 'fragment' ? '14 or 38' : '13 or 37'}`;
  }
  if (!Number.isInteger(e.ttlMs) || e.ttlMs < 0 || e.ttlMs > 0xffffffff) return `ttlMs ${e.ttlMs}: expected an integer 0..2^32-1`;
  return checkBackend(e.backend);
}

function checkBackend(b: BackendIdentity | undefined): string | undefined {
  if (b === undefined || typeof b.service !== 'string' || typeof b.address !== 'string') return 'backend: expected { service, address }';
  const n = Buffer.byteLength(b.service, 'utf8');
  if (n < 1 || n > MAX_SERVICE_NAME_BYTES) return `service name of ${n} bytes: expected 1..${MAX_SERVICE_NAME_BYTES}`;
  try {
    ipToBytes(b.address);
  } catch (err) {
    return `backend address: ${(err as Error).message}`;
  }
  return undefined;
}
