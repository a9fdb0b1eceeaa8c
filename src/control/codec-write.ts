/**
 * Encoding of control-plane datagrams (layout: codec-layout.ts): body writers, the streaming
 * PublishBodyWriter, and sealing (header + MAC). Writers throw RangeError on input they cannot
 * put on the wire; callers check entries first (checkEntry).
 */
import { hashInstanceId } from '../hash/rendezvous.js';
import { ipToBytes } from '../packet/address.js';
import type { MessageAuthenticator } from './auth.js';
import {
  ENTRY_KIND_CODE,
  HEADER_BYTES,
  MAC_BYTES,
  MAGIC,
  MAX_BODY_BYTES,
  MAX_LIVE_VIEW,
  MAX_SERVICE_NAME_BYTES,
  MESSAGE_TYPE_CODE,
  VERSION,
  validKeyLength,
  type AnswerBody,
  type BackendIdentity,
  type HeartbeatBody,
  type MessageTypeName,
  type PublishBody,
  type QueryBody,
  type SyncEntry,
} from './codec-layout.js';

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
