/**
 * Decoding of control-plane datagrams (layout: codec-layout.ts).
 *
 * decodeDatagram() never throws: every input yields a message or one RejectReason, checked in
 * this order: TRUNCATED, OVERSIZED, BAD_MAGIC, BAD_VERSION, BAD_LENGTH, BAD_MAC, UNKNOWN_PEER,
 * STALE, REPLAYED, UNKNOWN_TYPE, MALFORMED_BODY. Replay state is committed only for a message
 * that passed every check.
 */
import { formatAddress } from '../packet/address.js';
import { MAC_BYTES } from './auth.js';
import {
  HEADER_BYTES,
  MAGIC,
  MAX_DATAGRAM_BYTES,
  MAX_LIVE_VIEW,
  VERSION,
  validKeyLength,
  type AnswerBody,
  type BackendIdentity,
  type ControlMessage,
  type DecodeContext,
  type DecodeResult,
  type EntryKind,
  type HeartbeatBody,
  type MessageHeader,
  type MessageTypeName,
  type PublishBody,
  type QueryBody,
  type SyncEntry,
} from './codec-layout.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });
const TYPE_BY_CODE: readonly (MessageTypeName | undefined)[] = [undefined, 'HEARTBEAT', 'PUBLISH', 'QUERY', 'ANSWER'];
const KIND_BY_CODE: readonly (EntryKind | undefined)[] = [undefined, 'flow', 'token', 'fragment'];

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
