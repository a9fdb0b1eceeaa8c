/**
 * The flow table's slots: typed-array views over its buffer (flow-layout.ts) and the per-slot
 * primitives the placement (flow-placement.ts), the table and its listing share: the control
 * byte and key fields, the two bucket choices, full key comparison, timeouts, and freeing and
 * moving entries with their counts. Per-packet: allocates nothing, never throws.
 */
import { IPPROTO_TCP, type ParsedPacket } from '../packet/parsed-packet.js';
import { R, R_LAST, R_META, R_PORTS, FLOW_BUCKET_SLOTS, FLOW_CHUNK_SHIFT, FLOW_CHUNK_SLOTS, H32, H64, type FlowGeometry, type FlowViews } from './flow-layout.js';
import { FlowDestinations } from './flow-destinations.js';
import {
  CTL_HALF_OPEN,
  CTL_V6,
  FLOW_CLOSING,
  FLOW_EMPTY,
  FLOW_KIND_CLOSING,
  FLOW_KIND_ESTABLISHED,
  FLOW_KIND_HALF_OPEN,
  FLOW_KIND_OTHER,
  STATE_MASK,
} from './flow-entry.js';

/** Odd constant (2^32 / golden ratio) for the second bucket's multiplicative remix. */
const GOLDEN = 0x9e3779b1 | 0;
const TWO_32 = 4294967296;

/**
 * Big-endian 32-bit word, signed (int32): an unsigned word of 2^31 or more (an address from
 * 128.0.0.0 up) is no small integer on x64 Node and would be boxed, a heap allocation per
 * packet, when returned from a call V8 did not inline. Uint32Array stores take it as is;
 * comparisons with Uint32Array reads use (x | 0).
 */
export function readBE32(b: Uint8Array, i: number): number {
  return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3];
}

/** The idle timeouts a table applies; halfOpenMs is already the TCP idle timeout without flood protection. */
export interface SlotTimeouts {
  readonly tcpIdleMs: number;
  readonly tcpClosingMs: number;
  readonly udpIdleMs: number;
  readonly halfOpenMs: number;
}

export class FlowSlots {
  readonly h32: Uint32Array;
  readonly h64: Float64Array;
  /** The full 32-bit flow hash per slot: the fingerprint a lookup compares first. */
  readonly hash: Uint32Array;
  /** The fields a packet reads, one record per slot (see flow-layout.ts R_*): one or two cache lines per hit. */
  readonly rec: Uint32Array;
  readonly created: Uint32Array;
  readonly generation: Uint32Array;
  readonly token: Uint32Array;
  readonly service: Uint16Array;
  /** Live entries per chunk of FLOW_CHUNK_SLOTS slots (flow-layout.ts): scans skip a chunk at 0. */
  readonly chunkLive: Uint32Array;
  /** Chunks whose slots a scan (sweep, iteration, clear, recount) has read: tests and diagnostics. */
  chunksRead = 0;
  readonly destAddr: Uint32Array;
  readonly dest: FlowDestinations;
  readonly buckets: number;
  /** First stash slot (after the buckets). */
  readonly stashBase: number;
  /** Slots flows can occupy: buckets and stash. */
  readonly slots: number;
  readonly epoch: number;
  readonly halfOpenLimit: number;
  readonly #tcpIdleMs: number;
  readonly #tcpClosingMs: number;
  readonly #udpIdleMs: number;
  readonly #halfOpenMs: number;

  constructor(v: FlowViews, g: FlowGeometry, timeouts: SlotTimeouts, halfOpenLimit: number) {
    this.h32 = v.h32;
    this.h64 = v.h64;
    this.hash = v.hash;
    this.rec = v.rec;
    this.created = v.created;
    this.generation = v.generation;
    this.token = v.token;
    this.service = v.service;
    this.chunkLive = v.chunkLive;
    this.destAddr = v.destAddr;
    this.dest = new FlowDestinations(v, g.destinations);
    this.buckets = g.buckets;
    this.stashBase = g.buckets * g.bucketSlots;
    this.slots = this.stashBase + g.stashSlots;
    this.epoch = v.h64[H64.epochMs];
    this.halfOpenLimit = halfOpenLimit;
    this.#tcpIdleMs = timeouts.tcpIdleMs;
    this.#tcpClosingMs = timeouts.tcpClosingMs;
    this.#udpIdleMs = timeouts.udpIdleMs;
    this.#halfOpenMs = timeouts.halfOpenMs;
  }

  /**
   * Wall-clock ms as the table's relative time, signed (int32; every use takes differences
   * modulo 2^32, and Uint32Array stores keep the same bits): unsigned, it passed 2^31 after
   * 24.8 days and was then boxed, a heap allocation per packet, wherever rel() was not inlined.
   */
  rel(nowMs: number): number {
    return (nowMs - this.epoch) | 0;
  }

  /** A relative time as wall-clock ms, read as the nearest to the table's clock (the last insert or sweep). */
  absolute(rel: number): number {
    const clock = this.h64[H64.clockMs];
    return clock - ((this.rel(clock) - rel) | 0);
  }

  // The record's meta word: control byte (bits 0-7), protocol (8-15), destination index (16-31).
  ctlOf(s: number): number {
    return this.rec[s * R + R_META] & 0xff;
  }
  setCtl(s: number, c: number): void {
    const i = s * R + R_META;
    this.rec[i] = ((this.rec[i] & 0xffffff00) | c) >>> 0;
  }
  protoOf(s: number): number {
    return (this.rec[s * R + R_META] >>> 8) & 0xff;
  }
  dstOf(s: number): number {
    return this.rec[s * R + R_META] >>> 16;
  }
  /** Set the key's protocol and destination index, leaving the control byte. */
  setKeyMeta(s: number, proto: number, dst: number): void {
    const i = s * R + R_META;
    this.rec[i] = ((dst << 16) | (proto << 8) | (this.rec[i] & 0xff)) >>> 0;
  }

  /** FLOW_KIND_* of an occupied slot. */
  kindOf(s: number): number {
    const c = this.ctlOf(s);
    if ((c & STATE_MASK) === FLOW_CLOSING) return FLOW_KIND_CLOSING;
    if ((c & CTL_HALF_OPEN) !== 0) return FLOW_KIND_HALF_OPEN;
    return this.protoOf(s) === IPPROTO_TCP ? FLOW_KIND_ESTABLISHED : FLOW_KIND_OTHER;
  }

  /** Bucket index of the first choice. `h` signed or unsigned (same bits): callers pass it signed so it is never boxed. */
  bucket1(h: number): number {
    return (((h >>> 0) * this.buckets) / TWO_32) >>> 0;
  }

  /** Bucket index of the second choice, never equal to the first. */
  bucket2(h: number, b1: number): number {
    const r = Math.imul(h, GOLDEN);
    const b2 = (((r ^ (r >>> 16)) >>> 0) * this.buckets) / TWO_32 >>> 0;
    return b2 !== b1 ? b2 : b1 + 1 === this.buckets ? 0 : b1 + 1;
  }

  /** Base slot of the bucket an entry at slot s (in the bucket at base) may move to. */
  altBase(s: number, base: number): number {
    const h = this.hash[s];
    const b1 = this.bucket1(h);
    const b = b1 * FLOW_BUCKET_SLOTS === base ? this.bucket2(h, b1) : b1;
    return b * FLOW_BUCKET_SLOTS;
  }

  /** Full key comparison (the fingerprint already matched). */
  keyMatches(s: number, frame: Uint8Array, p: ParsedPacket): boolean {
    const v6 = p.addrLen === 16;
    if (this.rec[s * R + R_PORTS] !== ((p.srcPort << 16) | p.dstPort) >>> 0 || this.protoOf(s) !== p.protocol) return false;
    if (((this.ctlOf(s) & CTL_V6) !== 0) !== v6) return false;
    const src = this.rec;
    const dst = this.destAddr;
    const sb = s * R;
    const db = this.dstOf(s) * 4;
    const so = p.srcAddrOffset;
    const dO = p.dstAddrOffset;
    if ((src[sb] | 0) !== readBE32(frame, so) || (dst[db] | 0) !== readBE32(frame, dO)) return false;
    if (!v6) return true;
    return (
      (src[sb + 1] | 0) === readBE32(frame, so + 4) &&
      (src[sb + 2] | 0) === readBE32(frame, so + 8) &&
      (src[sb + 3] | 0) === readBE32(frame, so + 12) &&
      (dst[db + 1] | 0) === readBE32(frame, dO + 4) &&
      (dst[db + 2] | 0) === readBE32(frame, dO + 8) &&
      (dst[db + 3] | 0) === readBE32(frame, dO + 12)
    );
  }

  /** The occupied stash slot holding the packet's flow (hash `hash`, signed or unsigned), or -1. */
  findInStash(hash: number, frame: Uint8Array, p: ParsedPacket): number {
    const h = hash >>> 0;
    for (let s = this.stashBase; s < this.slots; s++) {
      if (this.hash[s] === h && (this.ctlOf(s) & STATE_MASK) !== FLOW_EMPTY && this.keyMatches(s, frame, p)) return s;
    }
    return -1;
  }

  timeoutOf(s: number): number {
    const c = this.ctlOf(s);
    if ((c & STATE_MASK) === FLOW_CLOSING) return this.#tcpClosingMs;
    // Half-open entries get the short timeout while they hold at least half their share (a
    // flood); otherwise the TCP idle timeout, as before. Conservative on purpose: with a fixed
    // 10 s timeout the cluster e2e (on a loaded machine) made more owner queries and broke more
    // connections than the base, with no flood; the cause was not found (sampled once a
    // second, those tables held no half-open entry).
    if ((c & CTL_HALF_OPEN) !== 0) return this.h64[H64.halfOpen] * 2 >= this.halfOpenLimit ? this.#halfOpenMs : this.#tcpIdleMs;
    return this.protoOf(s) === IPPROTO_TCP ? this.#tcpIdleMs : this.#udpIdleMs;
  }

  /** `now` is relative time. */
  expired(s: number, now: number): boolean {
    return ((now - this.rec[s * R + R_LAST]) | 0) >= this.timeoutOf(s);
  }

  /** Free an occupied slot (expiry, eviction, remove): counts and destination references follow. */
  release(s: number): void {
    const c = this.ctlOf(s);
    const h = this.h64;
    if ((c & CTL_HALF_OPEN) !== 0) h[H64.halfOpen]--;
    this.dest.release(this.dstOf(s));
    this.setCtl(s, FLOW_EMPTY);
    this.chunkLive[s >>> FLOW_CHUNK_SHIFT]--; // after the slot is empty: the count never drops below the truth
    h[H64.size]--;
    if (s >= this.stashBase) this.h32[H32.stashUsed]--;
  }

  expire(s: number): void {
    this.release(s);
    this.h64[H64.expirations]++;
  }

  evict(s: number): void {
    this.h64[H64.evictedHalfOpen + this.kindOf(s)]++;
    this.release(s);
  }

  /** s, or -1 when its entry expired (then freed). */
  live(s: number, nowMs: number): number {
    if (this.expired(s, this.rel(nowMs))) {
      this.expire(s);
      return -1;
    }
    return s;
  }

  /** A free slot in slots [from, to) (an expired entry is freed for it), or -1. */
  freeIn(from: number, to: number, now: number): number {
    for (let s = from; s < to; s++) {
      if ((this.ctlOf(s) & STATE_MASK) === FLOW_EMPTY) return s;
      if (this.expired(s, now)) {
        this.expire(s);
        return s;
      }
    }
    return -1;
  }

  /** Copy the entry at `from` into the empty slot `to` and free `from` (counts unchanged). */
  move(from: number, to: number): void {
    this.chunkLive[to >>> FLOW_CHUNK_SHIFT]++; // before the copy fills `to`
    this.hash[to] = this.hash[from];
    this.rec.copyWithin(to * R, from * R, from * R + R);
    this.created[to] = this.created[from];
    this.generation[to] = this.generation[from];
    this.token[to] = this.token[from];
    this.service[to] = this.service[from];
    this.setCtl(from, FLOW_EMPTY);
    this.chunkLive[from >>> FLOW_CHUNK_SHIFT]--;
    this.h64[H64.relocations]++;
  }

  /**
   * Count a slot about to be filled (before its control byte says occupied), so the chunk's count
   * never drops below the truth. Per insert: one increment.
   */
  occupy(s: number): void {
    this.chunkLive[s >>> FLOW_CHUNK_SHIFT]++;
  }

  /** First slot of chunk k and the end of its slots flows can occupy. */
  chunkEnd(k: number): number {
    const end = (k + 1) << FLOW_CHUNK_SHIFT;
    return end < this.slots ? end : this.slots;
  }

  /** Chunks holding slots flows can occupy. */
  get chunks(): number {
    return (this.slots + FLOW_CHUNK_SLOTS - 1) >>> FLOW_CHUNK_SHIFT;
  }

  /**
   * Make every chunk's count exact (an attached table: its writer may have died between a count
   * and the slot it counts). Only chunks whose count is not zero are read: a zero is never wrong.
   */
  recount(): void {
    const live = this.chunkLive;
    for (let k = 0, n = this.chunks; k < n; k++) {
      if (live[k] === 0) continue;
      this.chunksRead++;
      let c = 0;
      for (let s = k << FLOW_CHUNK_SHIFT, end = this.chunkEnd(k); s < end; s++) if ((this.ctlOf(s) & STATE_MASK) !== FLOW_EMPTY) c++;
      live[k] = c;
    }
  }

  /**
   * Timer work: examine up to maxSlots slots from where the last sweep stopped, free the
   * expired ones and return how many. A full pass takes slots / maxSlots calls. The slots of a
   * chunk with no entry count as examined without being read (an idle table stays unread).
   */
  sweep(nowMs: number, maxSlots: number): number {
    const total = this.slots;
    const now = this.rel(nowMs);
    this.h64[H64.clockMs] = nowMs;
    const live = this.chunkLive;
    let n = maxSlots < total ? maxSlots : total;
    let c = this.h32[H32.sweepCursor];
    if (c >= total) c = 0;
    let expired = 0;
    while (n > 0) {
      const k = c >>> FLOW_CHUNK_SHIFT;
      const chunkEnd = this.chunkEnd(k);
      const end = chunkEnd - c < n ? chunkEnd : c + n;
      n -= end - c;
      if (live[k] !== 0) {
        this.chunksRead++;
        for (let s = c; s < end; s++) {
          if ((this.ctlOf(s) & STATE_MASK) !== FLOW_EMPTY && this.expired(s, now)) {
            this.expire(s);
            expired++;
          }
        }
      }
      c = end === total ? 0 : end;
    }
    this.h32[H32.sweepCursor] = c;
    return expired;
  }
}
