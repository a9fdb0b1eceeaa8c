/**
 * Connection tracking: 5-tuple -> backend of record, in one contiguous buffer (flow-layout.ts)
 * that another process can attach to.
 *
 * Placement: bucketized cuckoo hashing. The slots form buckets of 8; a flow may live in one of two
 * buckets chosen from its flow hash, so a lookup examines at most 16 slots (FLOW_PROBE_WINDOW),
 * plus a 16-slot stash while any stash entry is in use. The full 32-bit flow hash is stored per
 * slot as the fingerprint: a lookup reads one dense array and compares keys only on a hash match,
 * and the full key is always compared, so two flows with one hash never share an entry. An insert
 * into two full buckets of a table below its capacity first moves an entry to its other bucket
 * (breadth-first, two levels at most: bounded work, never an unbounded chain of kicks), then
 * tries the stash; at capacity, or when that fails, it evicts. With the buckets sized at capacity + 1/16, a full table runs at 94% load; in the unit
 * tests and the benchmark a table filled to capacity evicted nothing.
 *
 * SYN floods (Ananta's rule): a TCP flow whose only packets were SYNs is half-open. Half-open
 * entries have their own share of the capacity (halfOpenLimit) and, while they fill at least
 * half of it, a short idle timeout (halfOpenMs; otherwise the TCP idle timeout); past it a new half-open flow replaces the oldest half-open entry of its
 * buckets, or is not tracked at all. Eviction prefers half-open entries, then closing ones; an
 * established entry is evicted only when no entry of another kind and no free slot is in reach,
 * and never for a half-open newcomer. A flow that is not tracked is still forwarded (the caller
 * gets the discard slot, which lookup never finds) and counted. Evictions are counted by kind.
 *
 * Each slot's control byte: bits 0-1 the state (empty, active, closing), bit 2 half-open, bits 3-4
 * the MPTCP token state, bit 5 IPv6. The key is the source address (4 words; IPv4 uses the
 * first), ports, protocol, family, and an index into the destination table (flow-destinations.ts).
 * Memory: FLOW_BYTES_PER_SLOT (54) bytes per slot, about 57.5 bytes per flow of capacity.
 *
 * Entries move between buckets on insert, so a slot number is valid only until the next insert,
 * except for an entry whose backend is below -1 (a caller's placeholder, such as an owner query in
 * flight): it is never moved nor evicted, so its slot stays valid until the caller changes it.
 *
 * Times: callers pass wall-clock milliseconds (Date.now()); the slots keep them relative to the
 * header's epoch. Timeouts are lazy (an expired entry found by lookup or insert is freed on the
 * spot) plus an incremental sweep driven by a timer.
 *
 * Per-packet methods (lookup, insert, touch, backendOf, token accessors, ...) allocate nothing and
 * never throw.
 */
import { formatAddress } from '../packet/address.js';
import { flowHashFromKey } from '../hash/murmur3.js';
import { IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type ParsedPacket } from '../packet/parsed-packet.js';
import {
  R,
  R_BACKEND,
  R_LAST,
  R_META,
  R_PORTS,
  R_TTOUCH,
  FLOW_BUCKET_SLOTS,
  FLOW_BYTES_PER_SLOT,
  FLOW_MAX_DESTINATIONS,
  FLOW_STASH_SLOTS,
  H32,
  H64,
  layoutBytes,
  readGeometry,
  viewsOver,
  writeHeader,
  type FlowGeometry,
  type FlowViews,
} from './flow-layout.js';
import { FlowDestinations } from './flow-destinations.js';

export { FLOW_BUCKET_SLOTS, FLOW_BYTES_PER_SLOT, FLOW_LAYOUT_VERSION, FLOW_STASH_SLOTS, FLOW_MAX_DESTINATIONS } from './flow-layout.js';

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

/** Slots examined per lookup/insert (two buckets), the stash aside. */
export const FLOW_PROBE_WINDOW = 2 * FLOW_BUCKET_SLOTS;
/** Largest capacity: 2^24 flows (about 0.97 GB). */
export const FLOW_MAX_CAPACITY = 1 << 24;
/** Share of the capacity half-open entries may hold unless told otherwise. */
export const DEFAULT_HALF_OPEN_SHARE = 0.25;
/** Idle timeout of a half-open entry unless told otherwise. */
export const DEFAULT_HALF_OPEN_MS = 10_000;

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

const STATE_MASK = 0x03;
const CTL_HALF_OPEN = 0x04;
const TOKEN_SHIFT = 3;
const TOKEN_MASK = 0x18;
const CTL_V6 = 0x20;
/** Odd constant (2^32 / golden ratio) for the second bucket's multiplicative remix. */
const GOLDEN = 0x9e3779b1 | 0;
const TWO_32 = 4294967296;
/** An attached table whose clock is this far from now cannot compare its relative times: it starts empty. */
const ATTACH_CLOCK_LIMIT_MS = 2 ** 30;

function readBE32(b: Uint8Array, i: number): number {
  return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
}

function roundUpPow2(n: number): number {
  let c = 1;
  while (c < n) c *= 2;
  return c;
}

/** Buckets for a capacity: capacity + 1/16 slots, so a full table runs at about 94% load. */
function geometryFor(capacity: number): FlowGeometry {
  const slots = capacity + Math.ceil(capacity / 16);
  return {
    capacity,
    buckets: Math.max(2, Math.ceil(slots / FLOW_BUCKET_SLOTS)),
    bucketSlots: FLOW_BUCKET_SLOTS,
    stashSlots: FLOW_STASH_SLOTS,
    destinations: Math.min(FLOW_MAX_DESTINATIONS, Math.max(16, capacity)),
  };
}

function checkTimeout(name: string, v: unknown): void {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v) || v >= 2 ** 31) {
    throw new RangeError(`flow table: timeouts.${name} is ${String(v)}; it must be a finite number of milliseconds in 1..2^31-1`);
  }
}

export class FlowTable {
  /** Flows the table holds without evicting (rounded up to a power of two). */
  readonly capacity: number;
  readonly timeouts: Required<FlowTimeouts>;
  /** The buffer holding the whole table (header included). */
  readonly buffer: ArrayBufferLike;
  /** Slots flows can occupy: buckets and stash. */
  readonly slots: number;
  /** Most half-open entries at once. */
  readonly halfOpenLimit: number;
  /** The slot a flow gets when it cannot be tracked: writable like any other, never found by lookup. */
  readonly discardSlot: number;

  readonly #h32: Uint32Array;
  readonly #h64: Float64Array;
  readonly #hash: Uint32Array;
  /** The fields a packet reads, one record per slot (see flow-layout.ts R_*): one or two cache lines per hit. */
  readonly #rec: Uint32Array;
  readonly #created: Uint32Array;
  readonly #generation: Uint32Array;
  readonly #token: Uint32Array;
  readonly #service: Uint16Array;
  readonly #destAddr: Uint32Array;
  readonly #dest: FlowDestinations;
  readonly #buckets: number;
  readonly #stashBase: number;
  readonly #epoch: number;
  readonly #tcpIdleMs: number;
  readonly #tcpClosingMs: number;
  readonly #udpIdleMs: number;
  readonly #halfOpenMs: number;
  readonly #protect: boolean;
  readonly #keyScratch = new Uint8Array(37);

  /** Config-time: throws a RangeError on a bad capacity, timeout or share; an Error on a buffer it cannot use. */
  constructor(capacity: number, timeouts: FlowTimeouts, options: FlowTableOptions = {}) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > FLOW_MAX_CAPACITY) {
      throw new RangeError(`flow table: capacity ${capacity} must be an integer in 1..${FLOW_MAX_CAPACITY}`);
    }
    checkTimeout('tcpIdleMs', timeouts.tcpIdleMs);
    checkTimeout('tcpClosingMs', timeouts.tcpClosingMs);
    checkTimeout('udpIdleMs', timeouts.udpIdleMs);
    const halfOpenMs = timeouts.halfOpenMs ?? DEFAULT_HALF_OPEN_MS;
    checkTimeout('halfOpenMs', halfOpenMs);
    const share = options.halfOpenShare ?? DEFAULT_HALF_OPEN_SHARE;
    if (typeof share !== 'number' || !(share > 0) || share > 1) {
      throw new RangeError(`flow table: halfOpenShare is ${share}; it must be in (0, 1]`);
    }
    const cap = roundUpPow2(capacity);
    let g: FlowGeometry;
    let buffer: ArrayBufferLike;
    let v: FlowViews;
    if (options.attach !== undefined) {
      buffer = options.attach;
      g = readGeometry(buffer);
      if (g.capacity !== cap) {
        throw new Error(`flow table: the buffer holds a table of capacity ${g.capacity}, not ${cap}; refusing to attach`);
      }
      v = viewsOver(buffer, g);
      const seed = options.hashSeed;
      if (seed !== undefined && v.h32[H32.hashSeedSet] === 1 && v.h32[H32.hashSeed] !== seed >>> 0) {
        throw new Error(`flow table: the buffer's flows were hashed with seed ${v.h32[H32.hashSeed]}, not ${seed >>> 0}; refusing to attach`);
      }
    } else {
      g = geometryFor(cap);
      const bytes = layoutBytes(g);
      if (options.buffer !== undefined) {
        buffer = options.buffer;
        if (buffer.byteLength < bytes) {
          throw new Error(`flow table: the buffer has ${buffer.byteLength} bytes; capacity ${cap} needs ${bytes}`);
        }
        new Uint8Array(buffer, 0, bytes).fill(0);
      } else {
        buffer = options.shared === true ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
      }
      v = viewsOver(buffer, g);
      writeHeader(v, g, options.epochMs ?? Date.now());
    }
    this.capacity = cap;
    this.buffer = buffer;
    this.#buckets = g.buckets;
    this.#stashBase = g.buckets * g.bucketSlots;
    this.slots = this.#stashBase + g.stashSlots;
    this.discardSlot = this.slots;
    this.halfOpenLimit = Math.max(1, Math.floor(cap * share + 1e-9)); // + 1e-9: a share read back from a limit gives that limit
    this.timeouts = { tcpIdleMs: timeouts.tcpIdleMs, tcpClosingMs: timeouts.tcpClosingMs, udpIdleMs: timeouts.udpIdleMs, halfOpenMs };
    this.#tcpIdleMs = timeouts.tcpIdleMs;
    this.#tcpClosingMs = timeouts.tcpClosingMs;
    this.#udpIdleMs = timeouts.udpIdleMs;
    this.#protect = options.floodProtection !== false;
    this.#halfOpenMs = this.#protect ? halfOpenMs : timeouts.tcpIdleMs;
    this.#h32 = v.h32;
    this.#h64 = v.h64;
    this.#hash = v.hash;
    this.#rec = v.rec;
    this.#created = v.created;
    this.#generation = v.generation;
    this.#token = v.token;
    this.#service = v.service;
    this.#destAddr = v.destAddr;
    this.#dest = new FlowDestinations(v, g.destinations);
    this.#epoch = v.h64[H64.epochMs];
    const h = this.#h32;
    h[H32.tcpIdleMs] = timeouts.tcpIdleMs;
    h[H32.tcpClosingMs] = timeouts.tcpClosingMs;
    h[H32.udpIdleMs] = timeouts.udpIdleMs;
    h[H32.halfOpenMs] = halfOpenMs;
    h[H32.halfOpenLimit] = this.halfOpenLimit;
    if (options.hashSeed !== undefined) this.setHashSeed(options.hashSeed);
    if (options.attach !== undefined) {
      const now = options.epochMs ?? Date.now();
      if (Math.abs(now - this.#h64[H64.clockMs]) >= ATTACH_CLOCK_LIMIT_MS) this.clear();
    }
  }

  /**
   * Attach to the table in `buffer` with the capacity and timeouts its header records (after
   * checking its magic and layout version: a version this build does not read is refused).
   */
  static attach(buffer: ArrayBufferLike, options: { hashSeed?: number; nowMs?: number } = {}): FlowTable {
    const g = readGeometry(buffer);
    const h = new Uint32Array(buffer, 0, 32);
    return new FlowTable(
      g.capacity,
      { tcpIdleMs: h[H32.tcpIdleMs], tcpClosingMs: h[H32.tcpClosingMs], udpIdleMs: h[H32.udpIdleMs], halfOpenMs: h[H32.halfOpenMs] },
      { attach: buffer, hashSeed: options.hashSeed, epochMs: options.nowMs, halfOpenShare: Math.min(1, h[H32.halfOpenLimit] / g.capacity) },
    );
  }

  /** Bytes of the buffer a table of this capacity needs (header and all arrays). */
  static bytesFor(capacity: number): number {
    return layoutBytes(geometryFor(roundUpPow2(capacity)));
  }

  /** Live entries (expired ones not yet found by lookup, insert or sweep included). */
  get size(): number {
    return this.#h64[H64.size];
  }
  /** Live half-open entries. */
  get halfOpen(): number {
    return this.#h64[H64.halfOpen];
  }
  /** insert() calls. */
  get inserts(): number {
    return this.#h64[H64.inserts];
  }
  /** Live entries replaced by another flow, all kinds. */
  get evictions(): number {
    const h = this.#h64;
    return h[H64.evictedHalfOpen] + h[H64.evictedEstablished] + h[H64.evictedClosing] + h[H64.evictedOther];
  }
  /** Evictions of one kind (FLOW_KIND_*). */
  evictionsOf(kind: number): number {
    return kind >= FLOW_KIND_HALF_OPEN && kind <= FLOW_KIND_OTHER ? this.#h64[H64.evictedHalfOpen + kind] : 0;
  }
  /** Entries freed because their timeout passed (by lookup, insert or sweep). */
  get expirations(): number {
    return this.#h64[H64.expirations];
  }
  /** New flows given the discard slot: half-open past their share with no half-open entry to replace, or no room at all. */
  get untracked(): number {
    return this.#h64[H64.untracked];
  }
  /** Entries moved to their other bucket to make room. */
  get relocations(): number {
    return this.#h64[H64.relocations];
  }
  /** Entries in the stash now. */
  get stashed(): number {
    return this.#h32[H32.stashUsed];
  }
  /** Bytes held by the table (the whole buffer). */
  get memoryBytes(): number {
    return this.#h32[H32.totalBytes];
  }
  /** Wall-clock ms of relative time 0. */
  get epochMs(): number {
    return this.#epoch;
  }
  /** The hash seed recorded in the header, or undefined before one was set. */
  get hashSeed(): number | undefined {
    return this.#h32[H32.hashSeedSet] === 1 ? this.#h32[H32.hashSeed] : undefined;
  }
  /** Record the flow hash seed the caller uses (a table handed to another process must be read with the same seed). */
  setHashSeed(seed: number): void {
    this.#h32[H32.hashSeed] = seed >>> 0;
    this.#h32[H32.hashSeedSet] = 1;
  }

  #rel(nowMs: number): number {
    return (nowMs - this.#epoch) >>> 0;
  }

  // The record's meta word: control byte (bits 0-7), protocol (8-15), destination index (16-31).
  #ctlOf(s: number): number {
    return this.#rec[s * R + R_META] & 0xff;
  }
  #setCtl(s: number, c: number): void {
    const i = s * R + R_META;
    this.#rec[i] = ((this.#rec[i] & 0xffffff00) | c) >>> 0;
  }
  #protoOf(s: number): number {
    return (this.#rec[s * R + R_META] >>> 8) & 0xff;
  }
  #dstOf(s: number): number {
    return this.#rec[s * R + R_META] >>> 16;
  }
  /** Set the key's protocol and destination index, leaving the control byte. */
  #setKeyMeta(s: number, proto: number, dst: number): void {
    const i = s * R + R_META;
    this.#rec[i] = ((dst << 16) | (proto << 8) | (this.#rec[i] & 0xff)) >>> 0;
  }

  /** First slot of the flow's first bucket. */
  #base1(h: number): number {
    return ((h * this.#buckets) / TWO_32) >>> 0;
  }

  /** Bucket index of the second choice, never equal to the first. */
  #bucket2(h: number, b1: number): number {
    const r = Math.imul(h, GOLDEN);
    const b2 = (((r ^ (r >>> 16)) >>> 0) * this.#buckets) / TWO_32 >>> 0;
    return b2 !== b1 ? b2 : b1 + 1 === this.#buckets ? 0 : b1 + 1;
  }

  /** Full key comparison (the fingerprint already matched). */
  #keyMatches(s: number, frame: Uint8Array, p: ParsedPacket): boolean {
    const v6 = p.addrLen === 16;
    if (this.#rec[s * R + R_PORTS] !== ((p.srcPort << 16) | p.dstPort) >>> 0 || this.#protoOf(s) !== p.protocol) return false;
    if (((this.#ctlOf(s) & CTL_V6) !== 0) !== v6) return false;
    const src = this.#rec;
    const dst = this.#destAddr;
    const sb = s * R;
    const db = this.#dstOf(s) * 4;
    const so = p.srcAddrOffset;
    const dO = p.dstAddrOffset;
    if (src[sb] !== readBE32(frame, so) || dst[db] !== readBE32(frame, dO)) return false;
    if (!v6) return true;
    return (
      src[sb + 1] === readBE32(frame, so + 4) &&
      src[sb + 2] === readBE32(frame, so + 8) &&
      src[sb + 3] === readBE32(frame, so + 12) &&
      dst[db + 1] === readBE32(frame, dO + 4) &&
      dst[db + 2] === readBE32(frame, dO + 8) &&
      dst[db + 3] === readBE32(frame, dO + 12)
    );
  }

  #timeoutOf(s: number): number {
    const c = this.#ctlOf(s);
    if ((c & STATE_MASK) === FLOW_CLOSING) return this.#tcpClosingMs;
    // Half-open entries get the short timeout while they hold at least half their share (a
    // flood); otherwise the TCP idle timeout, as before. Conservative on purpose: with a fixed
    // 10 s timeout the cluster e2e (on a loaded machine) made more owner queries and broke more
    // connections than the base, with no flood; the cause was not found (sampled once a
    // second, those tables held no half-open entry).
    if ((c & CTL_HALF_OPEN) !== 0) return this.#h64[H64.halfOpen] * 2 >= this.halfOpenLimit ? this.#halfOpenMs : this.#tcpIdleMs;
    return this.#protoOf(s) === IPPROTO_TCP ? this.#tcpIdleMs : this.#udpIdleMs;
  }

  #expired(s: number, now: number): boolean {
    return ((now - this.#rec[s * R + R_LAST]) | 0) >= this.#timeoutOf(s);
  }

  /** Free an occupied slot (expiry, eviction, remove): counts and destination references follow. */
  #release(s: number): void {
    const c = this.#ctlOf(s);
    const h = this.#h64;
    if ((c & CTL_HALF_OPEN) !== 0) h[H64.halfOpen]--;
    this.#dest.release(this.#dstOf(s));
    this.#setCtl(s, FLOW_EMPTY);
    h[H64.size]--;
    if (s >= this.#stashBase) this.#h32[H32.stashUsed]--;
  }

  #expire(s: number): void {
    this.#release(s);
    this.#h64[H64.expirations]++;
  }

  #evict(s: number): void {
    this.#h64[H64.evictedHalfOpen + this.kindOf(s)]++;
    this.#release(s);
  }

  /** Slot of the packet's flow, or -1. An expired entry is freed and reported as absent. */
  lookup(frame: Uint8Array, p: ParsedPacket, hash: number, nowMs: number): number {
    const h = hash >>> 0;
    const hashes = this.#hash;
    const base1 = this.#base1(h);
    const b1 = base1;
    let s = b1 * FLOW_BUCKET_SLOTS;
    for (const end = s + FLOW_BUCKET_SLOTS; s < end; s++) {
      if (hashes[s] === h && (this.#ctlOf(s) & STATE_MASK) !== FLOW_EMPTY && this.#keyMatches(s, frame, p)) return this.#live(s, nowMs);
    }
    s = this.#bucket2(h, b1) * FLOW_BUCKET_SLOTS;
    for (const end = s + FLOW_BUCKET_SLOTS; s < end; s++) {
      if (hashes[s] === h && (this.#ctlOf(s) & STATE_MASK) !== FLOW_EMPTY && this.#keyMatches(s, frame, p)) return this.#live(s, nowMs);
    }
    if (this.#h32[H32.stashUsed] > 0) {
      const s2 = this.#findInStash(h, frame, p);
      if (s2 >= 0) return this.#live(s2, nowMs);
    }
    return -1;
  }

  #live(s: number, nowMs: number): number {
    if (this.#expired(s, this.#rel(nowMs))) {
      this.#expire(s);
      return -1;
    }
    return s;
  }

  #findInStash(h: number, frame: Uint8Array, p: ParsedPacket): number {
    for (let s = this.#stashBase; s < this.slots; s++) {
      if (this.#hash[s] === h && (this.#ctlOf(s) & STATE_MASK) !== FLOW_EMPTY && this.#keyMatches(s, frame, p)) return s;
    }
    return -1;
  }

  /**
   * Record the packet's flow and return its slot. Reuses the flow's slot if present; else a free
   * (empty or expired) slot of the less loaded of its two buckets, else one made by moving an
   * entry to its other bucket, else a stash slot, else it evicts (half-open first, then closing,
   * then the least recently seen of the rest, never an established entry for a half-open flow).
   * A half-open flow past its share only replaces a half-open entry. When nothing may be
   * replaced, the flow is not tracked: it gets discardSlot (counted in untracked). The entry is
   * active, created and last seen at nowMs, with no MPTCP token.
   */
  insert(
    frame: Uint8Array,
    p: ParsedPacket,
    hash: number,
    nowMs: number,
    backendId: number,
    serviceIndex: number,
    generation: number,
  ): number {
    const h = hash >>> 0;
    const now = this.#rel(nowMs);
    const hashes = this.#hash;
    const hd = this.#h64;
    hd[H64.clockMs] = nowMs;
    const b1 = this.#base1(h);
    const base1 = b1 * FLOW_BUCKET_SLOTS;
    const base2 = this.#bucket2(h, b1) * FLOW_BUCKET_SLOTS;
    const v6 = p.addrLen === 16;
    const halfOpen = p.protocol === IPPROTO_TCP && (p.tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN;

    let target = -1;
    let free1 = -1;
    let free2 = -1;
    let live1 = 0;
    let live2 = 0;
    let oldHalf = -1;
    let oldHalfAge = -1;
    let oldClosing = -1;
    let oldClosingAge = -1;
    let oldOther = -1;
    let oldOtherAge = -1;
    for (let i = 0; i < FLOW_PROBE_WINDOW; i++) {
      const first = i < FLOW_BUCKET_SLOTS;
      const s = first ? base1 + i : base2 + i - FLOW_BUCKET_SLOTS;
      const c = this.#ctlOf(s);
      if ((c & STATE_MASK) !== FLOW_EMPTY) {
        if (hashes[s] === h && this.#keyMatches(s, frame, p)) {
          target = s;
          break;
        }
        if (!this.#expired(s, now)) {
          if (first) live1++;
          else live2++;
          if ((this.#rec[s * R + R_BACKEND] | 0) < -1) continue; // pinned by its caller: never evicted
          const age = (now - this.#rec[s * R + R_LAST]) | 0;
          if ((c & STATE_MASK) === FLOW_CLOSING) {
            if (age > oldClosingAge) {
              oldClosingAge = age;
              oldClosing = s;
            }
          } else if ((c & CTL_HALF_OPEN) !== 0) {
            if (age > oldHalfAge) {
              oldHalfAge = age;
              oldHalf = s;
            }
          } else if (age > oldOtherAge) {
            oldOtherAge = age;
            oldOther = s;
          }
          continue;
        }
        this.#expire(s);
      }
      if (first) {
        if (free1 < 0) free1 = s;
      } else if (free2 < 0) free2 = s;
    }
    if (target < 0 && this.#h32[H32.stashUsed] > 0) target = this.#findInStash(h, frame, p);

    if (target >= 0) {
      // Same flow already recorded: replace its values in place (an expired one counts as expired).
      if (this.#expired(target, now)) hd[H64.expirations]++;
      if ((this.#ctlOf(target) & CTL_HALF_OPEN) !== 0) hd[H64.halfOpen]--;
    } else {
      const d = this.#dest.acquire(frame, p.dstAddrOffset, v6);
      if (d >= 0) {
        if (halfOpen && this.#protect && hd[H64.halfOpen] >= this.halfOpenLimit) {
          // Past the half-open share: only another half-open entry may make room.
          if (oldHalf >= 0) {
            this.#evict(oldHalf);
            target = oldHalf;
          }
        } else {
          target = free1 >= 0 && (free2 < 0 || live1 <= live2) ? free1 : free2;
          // Below capacity, make room by moving entries (bounded); at capacity, evict at once.
          if (target < 0 && hd[H64.size] < this.capacity) {
            target = this.#relocate(base1, base2, now);
            if (target < 0) target = this.#stashSlot(now);
          }
          if (target < 0) {
            const victim = !this.#protect
              ? this.#oldest(oldHalf, oldClosing, oldOther, now)
              : oldHalf >= 0
                ? oldHalf
                : oldClosing >= 0
                  ? oldClosing
                  : halfOpen
                    ? -1
                    : oldOther;
            if (victim >= 0) {
              this.#evict(victim);
              target = victim;
            }
          }
        }
        if (target < 0) this.#dest.release(d);
      }
      if (target >= 0) {
        hd[H64.size]++;
        if (target >= this.#stashBase) this.#h32[H32.stashUsed]++;
        this.#setKeyMeta(target, p.protocol, d);
      } else {
        target = this.discardSlot;
        hd[H64.untracked]++;
        this.#setKeyMeta(target, p.protocol, this.#dest.scratch(frame, p.dstAddrOffset, v6));
      }
      hashes[target] = h;
      this.#rec[target * R + R_PORTS] = ((p.srcPort << 16) | p.dstPort) >>> 0;
      const src = this.#rec;
      const sb = target * R;
      const so = p.srcAddrOffset;
      src[sb] = readBE32(frame, so);
      src[sb + 1] = v6 ? readBE32(frame, so + 4) : 0;
      src[sb + 2] = v6 ? readBE32(frame, so + 8) : 0;
      src[sb + 3] = v6 ? readBE32(frame, so + 12) : 0;
    }
    this.#setCtl(target, FLOW_ACTIVE | (halfOpen ? CTL_HALF_OPEN : 0) | (v6 ? CTL_V6 : 0));
    if (halfOpen && target !== this.discardSlot) hd[H64.halfOpen]++;
    this.#rec[target * R + R_LAST] = now;
    this.#created[target] = now;
    this.#rec[target * R + R_BACKEND] = backendId;
    this.#service[target] = serviceIndex;
    this.#generation[target] = generation;
    this.#token[target] = 0;
    this.#rec[target * R + R_TTOUCH] = now;
    hd[H64.inserts]++;
    return target;
  }

  /** The least recently seen of up to three candidate slots (-1 = none). */
  #oldest(a: number, b: number, c: number, now: number): number {
    let best = a;
    if (b >= 0 && (best < 0 || ((now - this.#rec[(b) * R + R_LAST]) | 0) > ((now - this.#rec[(best) * R + R_LAST]) | 0))) best = b;
    if (c >= 0 && (best < 0 || ((now - this.#rec[(c) * R + R_LAST]) | 0) > ((now - this.#rec[(best) * R + R_LAST]) | 0))) best = c;
    return best;
  }

  /** Base slot of the bucket an entry at slot s (in the bucket at base) may move to. */
  #altBase(s: number, base: number): number {
    const h = this.#hash[s];
    const b1 = this.#base1(h);
    const b = b1 * FLOW_BUCKET_SLOTS === base ? this.#bucket2(h, b1) : b1;
    return b * FLOW_BUCKET_SLOTS;
  }

  /** A free slot of the bucket at base (an expired entry is freed for it), or -1. */
  #freeIn(base: number, now: number): number {
    for (let s = base; s < base + FLOW_BUCKET_SLOTS; s++) {
      if ((this.#ctlOf(s) & STATE_MASK) === FLOW_EMPTY) return s;
      if (this.#expired(s, now)) {
        this.#expire(s);
        return s;
      }
    }
    return -1;
  }

  /**
   * Make a free slot in one of the two full buckets at base1/base2 by moving entries to their
   * other bucket: one move (16 x 8 slots examined) or a chain of two (16 x 8 x 8). Bounded.
   */
  #relocate(base1: number, base2: number, now: number): number {
    for (let i = 0; i < FLOW_PROBE_WINDOW; i++) {
      const base = i < FLOW_BUCKET_SLOTS ? base1 : base2;
      const s = base + (i & (FLOW_BUCKET_SLOTS - 1));
      if ((this.#rec[s * R + R_BACKEND] | 0) < -1) continue;
      const f = this.#freeIn(this.#altBase(s, base), now);
      if (f >= 0) {
        this.#move(s, f);
        return s;
      }
    }
    for (let i = 0; i < FLOW_PROBE_WINDOW; i++) {
      const base = i < FLOW_BUCKET_SLOTS ? base1 : base2;
      const s = base + (i & (FLOW_BUCKET_SLOTS - 1));
      if ((this.#rec[s * R + R_BACKEND] | 0) < -1) continue;
      const alt = this.#altBase(s, base);
      for (let t = alt; t < alt + FLOW_BUCKET_SLOTS; t++) {
        if ((this.#rec[t * R + R_BACKEND] | 0) < -1) continue;
        const alt2 = this.#altBase(t, alt);
        if (alt2 === base1 || alt2 === base2) continue;
        const f = this.#freeIn(alt2, now);
        if (f >= 0) {
          this.#move(t, f);
          this.#move(s, t);
          return s;
        }
      }
    }
    return -1;
  }

  /** A free stash slot (an expired entry is freed for it), or -1. */
  #stashSlot(now: number): number {
    for (let s = this.#stashBase; s < this.slots; s++) {
      if ((this.#ctlOf(s) & STATE_MASK) === FLOW_EMPTY) return s;
      if (this.#expired(s, now)) {
        this.#expire(s);
        return s;
      }
    }
    return -1;
  }

  /** Copy the entry at `from` into the empty slot `to` and free `from` (counts unchanged). */
  #move(from: number, to: number): void {
    this.#hash[to] = this.#hash[from];
    this.#rec.copyWithin(to * R, from * R, from * R + R);
    this.#created[to] = this.#created[from];
    this.#generation[to] = this.#generation[from];
    this.#token[to] = this.#token[from];
    this.#service[to] = this.#service[from];
    this.#setCtl(from, FLOW_EMPTY);
    this.#h64[H64.relocations]++;
  }

  /**
   * A packet of the flow was seen: refresh lastSeen. A FIN or RST moves an active flow to closing
   * (short timeout); a half-open flow's first packet with ACK and without SYN completes its
   * handshake (established). Closing is not undone: a new SYN on the same 5-tuple keeps the
   * closing timeout until the caller remove()s and re-inserts the flow.
   */
  touch(slot: number, nowMs: number, tcpFlags: number): void {
    this.#rec[slot * R + R_LAST] = this.#rel(nowMs);
    const c = this.#ctlOf(slot);
    if ((c & STATE_MASK) !== FLOW_ACTIVE) return;
    if ((tcpFlags & (TCP_FIN | TCP_RST)) !== 0) {
      this.#setCtl(slot, (c & ~(STATE_MASK | CTL_HALF_OPEN)) | FLOW_CLOSING);
    } else if ((c & CTL_HALF_OPEN) !== 0 && (tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_ACK) {
      this.#setCtl(slot, c & ~CTL_HALF_OPEN);
    } else {
      return;
    }
    if ((c & CTL_HALF_OPEN) !== 0 && slot !== this.discardSlot) this.#h64[H64.halfOpen]--;
  }

  backendOf(slot: number): number {
    return (this.#rec[slot * R + R_BACKEND] | 0);
  }
  serviceOf(slot: number): number {
    return this.#service[slot];
  }
  setBackend(slot: number, backendId: number): void {
    this.#rec[slot * R + R_BACKEND] = backendId;
  }
  generationOf(slot: number): number {
    return this.#generation[slot];
  }
  /** FLOW_EMPTY, FLOW_ACTIVE or FLOW_CLOSING. */
  stateOf(slot: number): number {
    return this.#ctlOf(slot) & STATE_MASK;
  }
  /** FLOW_KIND_* of an occupied slot. */
  kindOf(slot: number): number {
    const c = this.#ctlOf(slot);
    if ((c & STATE_MASK) === FLOW_CLOSING) return FLOW_KIND_CLOSING;
    if ((c & CTL_HALF_OPEN) !== 0) return FLOW_KIND_HALF_OPEN;
    return this.#protoOf(slot) === IPPROTO_TCP ? FLOW_KIND_ESTABLISHED : FLOW_KIND_OTHER;
  }
  /** Wall-clock ms the flow was last seen. */
  lastSeenOf(slot: number): number {
    return this.#absolute(this.#rec[slot * R + R_LAST]);
  }
  /** Wall-clock ms the flow was created. */
  createdOf(slot: number): number {
    return this.#absolute(this.#created[slot]);
  }
  ipVersionOf(slot: number): number {
    return (this.#ctlOf(slot) & CTL_V6) !== 0 ? 6 : 4;
  }
  protocolOf(slot: number): number {
    return this.#protoOf(slot);
  }

  /** A relative time as wall-clock ms, read as the nearest to the table's clock (the last insert or sweep). */
  #absolute(rel: number): number {
    const clock = this.#h64[H64.clockMs];
    return clock - ((this.#rel(clock) - rel) | 0);
  }

  /** FLOW_TOKEN_NONE, FLOW_TOKEN_HELD or FLOW_TOKEN_COLLIDED. */
  tokenStateOf(slot: number): number {
    return (this.#ctlOf(slot) & TOKEN_MASK) >>> TOKEN_SHIFT;
  }
  /** The MPTCP token recorded for the flow's connection (meaningful unless the state is FLOW_TOKEN_NONE). */
  tokenOf(slot: number): number {
    return this.#token[slot];
  }
  /** Record the flow's MPTCP token state and token; `nowMs` counts as its last refresh. */
  setToken(slot: number, state: number, token: number, nowMs: number): void {
    this.#setCtl(slot, (this.#ctlOf(slot) & ~TOKEN_MASK) | ((state << TOKEN_SHIFT) & TOKEN_MASK));
    this.#token[slot] = token >>> 0;
    this.#rec[slot * R + R_TTOUCH] = this.#rel(nowMs);
  }
  /**
   * True (and the refresh recorded) when the flow holds a token last refreshed at least
   * `intervalMs` ago: the caller then refreshes the token in the token table.
   */
  tokenRefreshDue(slot: number, nowMs: number, intervalMs: number): boolean {
    if ((this.#ctlOf(slot) & TOKEN_MASK) !== FLOW_TOKEN_HELD << TOKEN_SHIFT) return false;
    const now = this.#rel(nowMs);
    if (((now - this.#rec[slot * R + R_TTOUCH]) | 0) < intervalMs) return false;
    this.#rec[slot * R + R_TTOUCH] = now;
    return true;
  }

  /** Forget a flow. No-op on an empty or out-of-range slot (and on the discard slot). */
  remove(slot: number): void {
    if (!(slot >= 0 && slot < this.slots) || (this.#ctlOf(slot) & STATE_MASK) === FLOW_EMPTY) return;
    this.#release(slot);
  }

  /** Forget every flow (counters other than size and half-open are kept). */
  clear(): void {
    this.#rec.fill(0);
    this.#dest.clear();
    this.#h64[H64.size] = 0;
    this.#h64[H64.halfOpen] = 0;
    this.#h32[H32.stashUsed] = 0;
    this.#h32[H32.sweepCursor] = 0;
  }

  /**
   * Timer work: examine up to maxSlots slots from where the last sweep stopped, free the
   * expired ones and return how many. A full pass takes slots / maxSlots calls.
   */
  sweep(nowMs: number, maxSlots: number): number {
    const total = this.slots;
    const now = this.#rel(nowMs);
    this.#h64[H64.clockMs] = nowMs;
    const n = maxSlots < total ? maxSlots : total;
    let c = this.#h32[H32.sweepCursor];
    if (c >= total) c = 0;
    let expired = 0;
    for (let i = 0; i < n; i++) {
      if ((this.#ctlOf(c) & STATE_MASK) !== FLOW_EMPTY && this.#expired(c, now)) {
        this.#expire(c);
        expired++;
      }
      c = c + 1 === total ? 0 : c + 1;
    }
    this.#h32[H32.sweepCursor] = c;
    return expired;
  }

  /**
   * Call cb(slot) for every occupied slot; with nowMs, skip entries whose timeout has passed.
   * cb may remove() or setBackend() the slot it is given, but must not insert. Control side.
   */
  forEachSlot(cb: (slot: number) => void, nowMs?: number): void {
    const now = nowMs === undefined ? 0 : this.#rel(nowMs);
    for (let slot = 0; slot < this.slots; slot++) {
      if ((this.#ctlOf(slot) & STATE_MASK) === FLOW_EMPTY) continue;
      if (nowMs !== undefined && this.#expired(slot, now)) continue;
      cb(slot);
    }
  }

  /** Decoded listing of up to `limit` live flows, for the admin API (allocates). */
  forEach(nowMs: number, cb: (entry: FlowEntryInfo) => void, limit = Infinity): void {
    let n = 0;
    const now = this.#rel(nowMs);
    for (let slot = 0; slot < this.slots && n < limit; slot++) {
      if ((this.#ctlOf(slot) & STATE_MASK) === FLOW_EMPTY || this.#expired(slot, now)) continue;
      cb(this.describe(slot, nowMs));
      n++;
    }
  }

  /** One slot decoded (allocates). The slot must be occupied. Ages wrap after 49.7 days. */
  describe(slot: number, nowMs: number): FlowEntryInfo {
    const v6 = (this.#ctlOf(slot) & CTL_V6) !== 0;
    const addrLen = v6 ? 16 : 4;
    this.keyOf(slot, this.#keyScratch);
    const now = this.#rel(nowMs);
    const ports = this.#rec[slot * R + R_PORTS];
    return {
      slot,
      ipVersion: v6 ? 6 : 4,
      protocol: this.#protoOf(slot),
      src: formatAddress(this.#keyScratch, 0, addrLen),
      dst: formatAddress(this.#keyScratch, addrLen, addrLen),
      srcPort: ports >>> 16,
      dstPort: ports & 0xffff,
      backendId: (this.#rec[slot * R + R_BACKEND] | 0),
      serviceIndex: this.#service[slot],
      generation: this.#generation[slot],
      ageMs: (now - this.#created[slot]) >>> 0,
      idleMs: (now - this.#rec[slot * R + R_LAST]) | 0,
      state: (this.#ctlOf(slot) & STATE_MASK) === FLOW_CLOSING ? 'closing' : 'active',
      kind: FLOW_KIND_NAMES[this.kindOf(slot)],
    };
  }

  /**
   * Write the slot's canonical flow key (the bytes murmur3.flowHash hashes: src ++ dst ++
   * sport BE ++ dport BE ++ protocol) into out (>= 37 bytes); returns its length, 13 or 37.
   */
  keyOf(slot: number, out: Uint8Array): number {
    const words = (this.#ctlOf(slot) & CTL_V6) !== 0 ? 4 : 1;
    const addrLen = words * 4;
    const sb = slot * R;
    const db = this.#dstOf(slot) * 4;
    for (let w = 0; w < words; w++) {
      const s = this.#rec[sb + w];
      const d = this.#destAddr[db + w];
      const o = w * 4;
      out[o] = s >>> 24;
      out[o + 1] = (s >>> 16) & 255;
      out[o + 2] = (s >>> 8) & 255;
      out[o + 3] = s & 255;
      out[addrLen + o] = d >>> 24;
      out[addrLen + o + 1] = (d >>> 16) & 255;
      out[addrLen + o + 2] = (d >>> 8) & 255;
      out[addrLen + o + 3] = d & 255;
    }
    const o = 2 * addrLen;
    const ports = this.#rec[slot * R + R_PORTS];
    out[o] = ports >>> 24;
    out[o + 1] = (ports >>> 16) & 255;
    out[o + 2] = (ports >>> 8) & 255;
    out[o + 3] = ports & 255;
    out[o + 4] = this.#protoOf(slot);
    return o + 5;
  }

  /** The flow hash of a stored flow (equal to flowHash() of its packets under the same seed). */
  flowHashOf(slot: number, seed: number): number {
    const len = this.keyOf(slot, this.#keyScratch);
    return flowHashFromKey(this.#keyScratch, (len - 5) >>> 1, seed);
  }

  /** Live flows pointing at destination entry i (tests and diagnostics). */
  destinationRefs(i: number): number {
    return this.#dest.refsOf(i);
  }
}
