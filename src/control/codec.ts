/**
 * Wire format of the control plane: one message per UDP datagram, at most MAX_DATAGRAM_BYTES.
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
 *       2 TOKEN (key = MPTCP token, 4 bytes big-endian).
 *
 * Backend identity on the wire is (service name, backend address bytes), never a per-instance
 * id: two instances that number their backends differently still agree on what an entry means.
 *
 * decodeDatagram() never throws: every input yields a message or one RejectReason, checked in
 * this order: TRUNCATED, OVERSIZED, BAD_MAGIC, BAD_VERSION, BAD_LENGTH, BAD_MAC, UNKNOWN_PEER,
 * STALE, REPLAYED, UNKNOWN_TYPE, MALFORMED_BODY. Replay state is committed only for a message
 * that passed every check.
 */
import { createHash } from 'node:crypto';
import { hashInstanceId } from '../hash/rendezvous.js';
import { formatAddress, ipToBytes } from '../packet/address.js';
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
export type EntryKind = 'flow' | 'token';
export const ENTRY_KIND_CODE: Readonly<Record<EntryKind, number>> = { flow: 1, token: 2 };

/** A backend as every instance names it: the service's name and the backend's canonical address. */
export interface BackendIdentity {
  service: string;
  /** Canonical IPv4 or IPv6 text (RFC 5952), as in the validated config. */
  address: string;
}

/** One piece of flow state: key -> backend, valid for ttlMs (0 withdraws it). */
export interface SyncEntry {
  kind: EntryKind;
  /** Flow: canonical 5-tuple (13 or 37 bytes). Token: 4 bytes big-endian. */
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
  return kind === 'token' ? length === 4 : length === 13 || length === 37;
}

/** The kind implied by a key's length (4: token; 13 or 37: flow), or undefined. */
export function kindOfKey(key: Uint8Array): EntryKind | undefined {
  if (key.length === 4) return 'token';
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
  if (e.kind !== 'flow' && e.kind !== 'token') return `kind ${String(e.kind)}: expected "flow" or "token"`;
  if (!(e.key instanceof Uint8Array) || !validKeyLength(e.kind, e.key.length)) {
    return `${e.kind} key of ${e.key?.length} bytes: expected ${e.kind === 'token' ? '4' : '13 or 37'}`;
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

/** nameLen | name | addrLen | addr for a backend; cached per identity object. */
const backendBytesCache = new WeakMap<BackendIdentity, Uint8Array>();
function backendBytes(b: BackendIdentity): Uint8Array {
  let bytes = backendBytesCache.get(b);
  if (bytes === undefined) {
    const name = Buffer.from(b.service, 'utf8');
    const addr = ipToBytes(b.address);
    if (name.length < 1 || name.length > MAX_SERVICE_NAME_BYTES) {
      throw new RangeError(`service name of ${name.length} bytes: expected 1..${MAX_SERVICE_NAME_BYTES}`);
    }
    bytes = new Uint8Array(2 + name.length + addr.length);
    bytes[0] = name.length;
    bytes.set(name, 1);
    bytes[1 + name.length] = addr.length;
    bytes.set(addr, 2 + name.length);
    backendBytesCache.set(b, bytes);
  }
  return bytes;
}

// ---- encoding -----------------------------------------------------------------------------

function writeU64Number(out: Buffer, off: number, v: number): void {
  out.writeUInt32BE(Math.floor(v / 0x100000000) >>> 0, off);
  out.writeUInt32BE(v >>> 0, off + 4);
}

/** Write a HEARTBEAT body at `off`; returns its length. */
export function writeHeartbeatBody(out: Buffer, off: number, body: HeartbeatBody): number {
  const n = body.live.length;
  if (n > MAX_LIVE_VIEW) throw new RangeError(`heartbeat live view of ${n} instances: at most ${MAX_LIVE_VIEW}`);
  if (!Number.isSafeInteger(body.generation) || body.generation < 0) throw new RangeError(`generation ${body.generation}: expected a safe integer >= 0`);
  writeU64Number(out, off, body.generation);
  out.writeBigUInt64BE(BigInt.asUintN(64, body.backendSetHash), off + 8);
  out.writeUInt16BE(n, off + 16);
  for (let i = 0; i < n; i++) out.writeUInt32BE(body.live[i] >>> 0, off + 18 + i * 4);
  return 18 + n * 4;
}

/** Write a QUERY body at `off`; returns its length. */
export function writeQueryBody(out: Buffer, off: number, body: QueryBody): number {
  if (!validKeyLength(body.kind, body.key.length)) throw new RangeError(`query: ${body.kind} key of ${body.key.length} bytes`);
  out.writeUInt32BE(body.queryId >>> 0, off);
  out[off + 4] = ENTRY_KIND_CODE[body.kind];
  out[off + 5] = body.key.length;
  out.set(body.key, off + 6);
  return 6 + body.key.length;
}

/** Write an ANSWER body at `off`; returns its length. */
export function writeAnswerBody(out: Buffer, off: number, body: AnswerBody): number {
  if (!validKeyLength(body.kind, body.key.length)) throw new RangeError(`answer: ${body.kind} key of ${body.key.length} bytes`);
  out.writeUInt32BE(body.queryId >>> 0, off);
  out[off + 4] = ENTRY_KIND_CODE[body.kind];
  out[off + 5] = body.key.length;
  out.set(body.key, off + 6);
  let o = off + 6 + body.key.length;
  if (!body.found || body.backend === undefined) {
    out[o] = 0;
    return o + 1 - off;
  }
  out[o] = 1;
  out.writeUInt32BE(Math.min(Math.max(0, Math.floor(body.ttlMs)), 0xffffffff), o + 1);
  const bb = backendBytes(body.backend);
  out.set(bb, o + 5);
  o += 5 + bb.length;
  return o - off;
}

/**
 * Fills one PUBLISH body entry by entry, as many as fit in `max` bytes:
 *   w.begin(buf, HEADER_BYTES, MAX_BODY_BYTES); while (w.add(e)) ...; len = w.finish();
 * Entries go at the front, the backend dictionary is gathered aside and appended by finish().
 */
export class PublishBodyWriter {
  #out: Buffer = Buffer.alloc(0);
  #off = 0;
  #max = 0;
  #pos = 0; // next entry byte, relative to #off
  #count = 0;
  readonly #dict = new Map<BackendIdentity, number>();
  readonly #dictBytes = Buffer.alloc(MAX_BODY_BYTES);
  #dictLen = 0;

  begin(out: Buffer, off: number, max: number): void {
    this.#out = out;
    this.#off = off;
    this.#max = Math.min(max, MAX_BODY_BYTES);
    this.#pos = 2;
    this.#count = 0;
    this.#dict.clear();
    this.#dictLen = 0;
  }

  get count(): number {
    return this.#count;
  }

  /** Append one entry; false (and nothing written) if it does not fit. The entry must pass checkEntry. */
  add(e: SyncEntry): boolean {
    if (this.#count >= 0xffff) return false;
    let index = this.#dict.get(e.backend);
    let bb: Uint8Array | undefined;
    if (index === undefined) {
      if (this.#dict.size >= 255) return false;
      bb = backendBytes(e.backend);
    }
    const entryLen = 2 + e.key.length + 5;
    const need = this.#pos + entryLen + 1 + this.#dictLen + (bb?.length ?? 0);
    if (need > this.#max) return false;
    if (bb !== undefined) {
      index = this.#dict.size;
      this.#dict.set(e.backend, index);
      this.#dictBytes.set(bb, this.#dictLen);
      this.#dictLen += bb.length;
    }
    const out = this.#out;
    let o = this.#off + this.#pos;
    out[o] = ENTRY_KIND_CODE[e.kind];
    out[o + 1] = e.key.length;
    out.set(e.key, o + 2);
    o += 2 + e.key.length;
    out[o] = index as number;
    out.writeUInt32BE(e.ttlMs >>> 0, o + 1);
    this.#pos += entryLen;
    this.#count++;
    return true;
  }

  /** Write the entry count and the backend dictionary; returns the body length. */
  finish(): number {
    const out = this.#out;
    out.writeUInt16BE(this.#count, this.#off);
    out[this.#off + this.#pos] = this.#dict.size;
    out.set(this.#dictBytes.subarray(0, this.#dictLen), this.#off + this.#pos + 1);
    return this.#pos + 1 + this.#dictLen;
  }
}

const publishWriter = new PublishBodyWriter();

/** Write a whole PUBLISH body; throws if the entries do not fit in one datagram. */
export function writePublishBody(out: Buffer, off: number, body: PublishBody): number {
  publishWriter.begin(out, off, Math.min(MAX_BODY_BYTES, out.length - off));
  for (const e of body.entries) {
    if (!publishWriter.add(e)) throw new RangeError(`publish: ${body.entries.length} entries do not fit in one datagram`);
  }
  return publishWriter.finish();
}

export interface SealFields {
  type: MessageTypeName;
  sender: number;
  incarnation: bigint;
  sequence: bigint | number;
  timestampMs: number;
}

/**
 * Write the header for a body already at out[HEADER_BYTES, HEADER_BYTES + bodyLen) and the MAC
 * after it; returns the datagram length.
 */
export function sealDatagram(out: Buffer, bodyLen: number, f: SealFields, auth: MessageAuthenticator): number {
  if (bodyLen < 0 || bodyLen > MAX_BODY_BYTES) throw new RangeError(`body of ${bodyLen} bytes: at most ${MAX_BODY_BYTES}`);
  out.writeUInt32BE(MAGIC, 0);
  out[4] = VERSION;
  out[5] = MESSAGE_TYPE_CODE[f.type];
  out.writeUInt16BE(bodyLen, 6);
  out.writeUInt32BE(f.sender >>> 0, 8);
  out.writeBigUInt64BE(BigInt.asUintN(64, f.incarnation), 12);
  if (typeof f.sequence === 'number') writeU64Number(out, 20, f.sequence);
  else out.writeBigUInt64BE(BigInt.asUintN(64, f.sequence), 20);
  writeU64Number(out, 28, Math.max(0, Math.floor(f.timestampMs)));
  const macOff = HEADER_BYTES + bodyLen;
  auth.sign(out, 0, macOff, out, macOff);
  return macOff + MAC_BYTES;
}

export type MessageBody = HeartbeatBody | PublishBody | QueryBody | AnswerBody;

/** Body + header + MAC in one call (tests, tools). The body must match f.type. */
export function encodeMessage(out: Buffer, f: SealFields, body: MessageBody, auth: MessageAuthenticator): number {
  let len: number;
  switch (f.type) {
    case 'HEARTBEAT':
      len = writeHeartbeatBody(out, HEADER_BYTES, body as HeartbeatBody);
      break;
    case 'PUBLISH':
      len = writePublishBody(out, HEADER_BYTES, body as PublishBody);
      break;
    case 'QUERY':
      len = writeQueryBody(out, HEADER_BYTES, body as QueryBody);
      break;
    case 'ANSWER':
      len = writeAnswerBody(out, HEADER_BYTES, body as AnswerBody);
      break;
  }
  return sealDatagram(out, len, f, auth);
}

/** The 32-bit sender field for an instance id. */
export function senderHash(instanceId: string): number {
  return hashInstanceId(instanceId);
}

// ---- decoding -----------------------------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true });
const TYPE_BY_CODE: readonly (MessageTypeName | undefined)[] = [undefined, 'HEARTBEAT', 'PUBLISH', 'QUERY', 'ANSWER'];
const KIND_BY_CODE: readonly (EntryKind | undefined)[] = [undefined, 'flow', 'token'];

/** Thrown inside body parsing only; decodeDatagram turns it into MALFORMED_BODY. */
class Malformed extends Error {}

/** A bounds-checked reader over body bytes [pos, end). */
class Reader {
  constructor(
    readonly b: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}
  need(n: number): void {
    if (this.pos + n > this.end) throw new Malformed('body ends early');
  }
  u8(): number {
    this.need(1);
    return this.b[this.pos++];
  }
  u16(): number {
    this.need(2);
    const v = (this.b[this.pos] << 8) | this.b[this.pos + 1];
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const b = this.b;
    const p = this.pos;
    this.pos += 4;
    return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
  }
  u64n(): number {
    const hi = this.u32();
    return hi * 0x100000000 + this.u32();
  }
  u64(): bigint {
    const hi = this.u32();
    return (BigInt(hi) << 32n) | BigInt(this.u32());
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const out = Uint8Array.from(this.b.subarray(this.pos, this.pos + n)); // a plain copy, even from a Buffer
    this.pos += n;
    return out;
  }
  kindAndKey(): { kind: EntryKind; key: Uint8Array } {
    const kind = KIND_BY_CODE[this.u8()];
    if (kind === undefined) throw new Malformed('unknown entry kind');
    const len = this.u8();
    if (!validKeyLength(kind, len)) throw new Malformed('key length does not match kind');
    return { kind, key: this.bytes(len) };
  }
  backend(): BackendIdentity {
    const nameLen = this.u8();
    if (nameLen === 0) throw new Malformed('empty service name');
    this.need(nameLen);
    const service = utf8.decode(this.b.subarray(this.pos, this.pos + nameLen)); // throws TypeError on bad UTF-8
    this.pos += nameLen;
    const addrLen = this.u8();
    if (addrLen !== 4 && addrLen !== 16) throw new Malformed('address length');
    this.need(addrLen);
    const address = formatAddress(this.b, this.pos, addrLen);
    this.pos += addrLen;
    return { service, address };
  }
  done(): void {
    if (this.pos !== this.end) throw new Malformed('trailing bytes');
  }
}

function readHeartbeat(r: Reader): HeartbeatBody {
  const generation = r.u64n();
  if (!Number.isSafeInteger(generation)) throw new Malformed('generation');
  const backendSetHash = r.u64();
  const n = r.u16();
  if (n > MAX_LIVE_VIEW) throw new Malformed('live view too long');
  r.need(n * 4);
  const live: number[] = new Array<number>(n);
  for (let i = 0; i < n; i++) live[i] = r.u32();
  r.done();
  return { generation, backendSetHash, live };
}

function readPublish(r: Reader): PublishBody {
  const count = r.u16();
  if (count === 0) throw new Malformed('no entries');
  // Entries first; backend indexes are resolved against the dictionary that follows them.
  const kinds: EntryKind[] = new Array<EntryKind>(count);
  const keys: Uint8Array[] = new Array<Uint8Array>(count);
  const idx = new Uint8Array(count);
  const ttls = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const { kind, key } = r.kindAndKey();
    kinds[i] = kind;
    keys[i] = key;
    idx[i] = r.u8();
    ttls[i] = r.u32();
  }
  const nb = r.u8();
  const backends: BackendIdentity[] = new Array<BackendIdentity>(nb);
  for (let i = 0; i < nb; i++) backends[i] = r.backend();
  r.done();
  const entries: SyncEntry[] = new Array<SyncEntry>(count);
  for (let i = 0; i < count; i++) {
    const backend = backends[idx[i]];
    if (idx[i] >= nb || backend === undefined) throw new Malformed('backend index out of range');
    entries[i] = { kind: kinds[i], key: keys[i], backend, ttlMs: ttls[i] };
  }
  return { entries };
}

function readQuery(r: Reader): QueryBody {
  const queryId = r.u32();
  const { kind, key } = r.kindAndKey();
  r.done();
  return { queryId, kind, key };
}

function readAnswer(r: Reader): AnswerBody {
  const queryId = r.u32();
  const { kind, key } = r.kindAndKey();
  const found = r.u8();
  if (found === 0) {
    r.done();
    return { queryId, kind, key, found: false, ttlMs: 0 };
  }
  if (found !== 1) throw new Malformed('found flag');
  const ttlMs = r.u32();
  const backend = r.backend();
  r.done();
  return { queryId, kind, key, found: true, backend, ttlMs };
}

function be32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/**
 * Decode, authenticate and replay-check one datagram. Never throws. On success the sender's
 * replay state advances; on any rejection nothing changes.
 */
export function decodeDatagram(data: Uint8Array, ctx: DecodeContext): DecodeResult {
  try {
    return decodeUnsafe(data, ctx);
  } catch {
    // Unreachable by design (body errors are caught below); kept so that no input can throw.
    return { ok: false, reason: 'MALFORMED_BODY' };
  }
}

function decodeUnsafe(data: Uint8Array, ctx: DecodeContext): DecodeResult {
  const len = data.length;
  if (len < HEADER_BYTES + MAC_BYTES) return { ok: false, reason: 'TRUNCATED' };
  if (len > MAX_DATAGRAM_BYTES) return { ok: false, reason: 'OVERSIZED' };
  if (be32(data, 0) !== MAGIC) return { ok: false, reason: 'BAD_MAGIC' };
  if (data[4] !== VERSION) return { ok: false, reason: 'BAD_VERSION' };
  const bodyLen = (data[6] << 8) | data[7];
  if (HEADER_BYTES + bodyLen + MAC_BYTES !== len) return { ok: false, reason: 'BAD_LENGTH' };
  const macOff = HEADER_BYTES + bodyLen;
  if (!ctx.auth.verify(data, 0, macOff, data, macOff)) return { ok: false, reason: 'BAD_MAC' };

  const sender = be32(data, 8);
  if (!ctx.isKnownSender(sender)) return { ok: false, reason: 'UNKNOWN_PEER' };
  const incarnation = (BigInt(be32(data, 12)) << 32n) | BigInt(be32(data, 16));
  const sequence = (BigInt(be32(data, 20)) << 32n) | BigInt(be32(data, 24));
  const timestampMs = be32(data, 28) * 0x100000000 + be32(data, 32);
  const verdict = ctx.replay.check(sender, incarnation, sequence, timestampMs, ctx.nowMs);
  if (verdict === 'stale') return { ok: false, reason: 'STALE' };
  if (verdict === 'replayed') return { ok: false, reason: 'REPLAYED' };

  const type = TYPE_BY_CODE[data[5]];
  if (type === undefined) return { ok: false, reason: 'UNKNOWN_TYPE' };
  const header: MessageHeader = { type, sender, incarnation, sequence, timestampMs };
  const r = new Reader(data, HEADER_BYTES, macOff);
  let message: ControlMessage;
  try {
    switch (type) {
      case 'HEARTBEAT':
        message = { type, header, body: readHeartbeat(r) };
        break;
      case 'PUBLISH':
        message = { type, header, body: readPublish(r) };
        break;
      case 'QUERY':
        message = { type, header, body: readQuery(r) };
        break;
      case 'ANSWER':
        message = { type, header, body: readAnswer(r) };
        break;
    }
  } catch {
    return { ok: false, reason: 'MALFORMED_BODY' };
  }
  ctx.replay.commit(sender, incarnation, sequence, timestampMs);
  return { ok: true, message };
}
