/**
 * Connection tracking: 5-tuple -> backend of record, in preallocated typed arrays.
 *
 * Layout: the slots form buckets of 8. A flow may live in one of two buckets chosen from its
 * flow hash (the low bits, and a multiplicative remix of all 32 bits), so a lookup examines at
 * most 16 slots (FLOW_PROBE_WINDOW) and an insert goes to the less loaded of the two buckets
 * ("power of two choices"). Measured in a simulation, at 38% load linear probing with a 16-slot
 * window overflows about once per 50k inserts; two buckets of 8 did not overflow at 50% load
 * and overflowed about 1 insert in 100k at 75%. An insert into two full buckets evicts the
 * entry seen least recently among their 16 slots and counts it, so insert never fails and the
 * work per packet is bounded. Timeouts are lazy (an expired entry found by lookup or insert is
 * freed on the spot) plus an incremental sweep driven by a timer.
 *
 * Each slot has a control byte: bits 0-1 the state (empty, active, closing), bits 2-7 the top 6
 * bits of the flow hash, so most non-matching slots are rejected without reading their key.
 * A flow must therefore always be looked up and inserted with the same hash function and seed.
 *
 * Key per slot, 10 words (Uint32Array):
 *   [0] ipVersion << 8 | protocol   [1] srcPort << 16 | dstPort
 *   [2..5] src address words (big-endian; IPv4 uses [2], the rest stay 0)
 *   [6..9] dst address words (IPv4 uses [6])
 * The family is part of the key, so an IPv4 and an IPv6 flow with equal ports never collide.
 *
 * Memory per slot: key 40 + backendId 4 + serviceIndex 2 + lastSeen 8 + created 8 +
 * generation 4 + control 1 = 67 bytes (FLOW_BYTES_PER_SLOT). 2^20 slots = 67 MiB (70 MB).
 * Keep the load at or under ~50% for a near-zero eviction rate: 1M live flows want 2^21 slots.
 *
 * Per-packet methods (lookup, insert, touch, backendOf, ...) allocate nothing and never throw.
 */
import { formatAddress } from '../packet/address.js';
import { flowHashFromKey } from '../hash/murmur3.js';
import { IPPROTO_TCP, TCP_FIN, TCP_RST, type ParsedPacket } from '../packet/parsed-packet.js';

export const FLOW_EMPTY = 0;
export const FLOW_ACTIVE = 1;
/** After a FIN or RST: kept for tcpClosingMs so the last ACKs and retransmits still reach the backend. */
export const FLOW_CLOSING = 2;

/** Slots per bucket; a flow may live in either of two buckets. */
export const FLOW_BUCKET_SLOTS = 8;
/** Slots examined per lookup/insert (two buckets). */
export const FLOW_PROBE_WINDOW = 2 * FLOW_BUCKET_SLOTS;
export const FLOW_KEY_WORDS = 10;
export const FLOW_BYTES_PER_SLOT = FLOW_KEY_WORDS * 4 + 4 + 2 + 8 + 8 + 4 + 1;
/** Largest table: 2^24 slots (about 1.1 GB). */
export const FLOW_MAX_CAPACITY = 1 << 24;

export interface FlowTimeouts {
  /** Idle timeout of an established (or half-open) TCP flow. */
  readonly tcpIdleMs: number;
  /** Idle timeout of a TCP flow after a FIN or RST. */
  readonly tcpClosingMs: number;
  /** Idle timeout of UDP and any other protocol. */
  readonly udpIdleMs: number;
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
}

const STATE_MASK = 0x03;
const TAG_MASK = 0xfc;
/** Odd constant (2^32 / golden ratio) for the second bucket's multiplicative remix. */
const GOLDEN = 0x9e3779b1 | 0;

function readBE32(b: Uint8Array, i: number): number {
  return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
}

function roundUpPow2(n: number): number {
  let c = 1;
  while (c < n) c *= 2;
  return c;
}


export class FlowTable {
  readonly capacity: number;
  readonly timeouts: FlowTimeouts;

  private readonly bucketSlots: number;
  private readonly bucketMask: number;
  private readonly bucket2Shift: number;
  private readonly probeSlots: number;
  private readonly keys: Uint32Array;
  private readonly backendIds: Int32Array;
  private readonly serviceIndexes: Int16Array;
  private readonly lastSeen: Float64Array;
  private readonly createdMs: Float64Array;
  private readonly generations: Uint32Array;
  /** Per slot: state (bits 0-1) | hash tag (bits 2-7). */
  private readonly ctl: Uint8Array;
  private readonly tcpIdleMs: number;
  private readonly tcpClosingMs: number;
  private readonly udpIdleMs: number;
  private readonly keyScratch = new Uint8Array(37);

  private sweepCursor = 0;
  private nSize = 0;
  private nInserts = 0;
  private nEvictions = 0;
  private nExpirations = 0;

  /** Config-time: throws a RangeError on a bad capacity or timeout. */
  constructor(capacity: number, timeouts: FlowTimeouts) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > FLOW_MAX_CAPACITY) {
      throw new RangeError(`flow table: capacity ${capacity} must be an integer in 1..${FLOW_MAX_CAPACITY}`);
    }
    for (const name of ['tcpIdleMs', 'tcpClosingMs', 'udpIdleMs'] as const) {
      const v = timeouts[name];
      if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
        throw new RangeError(`flow table: timeouts.${name} is ${v}; it must be a finite number of milliseconds > 0`);
      }
    }
    const cap = roundUpPow2(capacity);
    this.capacity = cap;
    this.bucketSlots = Math.min(FLOW_BUCKET_SLOTS, cap);
    const buckets = cap / this.bucketSlots;
    this.bucketMask = buckets - 1;
    this.bucket2Shift = 32 - Math.log2(buckets);
    this.probeSlots = buckets > 1 ? 2 * this.bucketSlots : this.bucketSlots;
    this.timeouts = { ...timeouts };
    this.tcpIdleMs = timeouts.tcpIdleMs;
    this.tcpClosingMs = timeouts.tcpClosingMs;
    this.udpIdleMs = timeouts.udpIdleMs;
    this.keys = new Uint32Array(cap * FLOW_KEY_WORDS);
    this.backendIds = new Int32Array(cap);
    this.serviceIndexes = new Int16Array(cap);
    this.lastSeen = new Float64Array(cap);
    this.createdMs = new Float64Array(cap);
    this.generations = new Uint32Array(cap);
    this.ctl = new Uint8Array(cap);
  }

  /** Live entries (expired ones not yet found by lookup, insert or sweep included). */
  get size(): number {
    return this.nSize;
  }
  /** insert() calls. */
  get inserts(): number {
    return this.nInserts;
  }
  /** Live entries overwritten because both buckets of a new flow were full. */
  get evictions(): number {
    return this.nEvictions;
  }
  /** Entries freed because their timeout passed (by lookup, insert or sweep). */
  get expirations(): number {
    return this.nExpirations;
  }
  /** Bytes held by the table's arrays. */
  get memoryBytes(): number {
    return (
      this.keys.byteLength +
      this.backendIds.byteLength +
      this.serviceIndexes.byteLength +
      this.lastSeen.byteLength +
      this.createdMs.byteLength +
      this.generations.byteLength +
      this.ctl.byteLength
    );
  }

  /** First slot of the flow's second bucket (its first is (hash & bucketMask) * bucketSlots). */
  private secondBucket(hash: number): number {
    const b1 = hash & this.bucketMask;
    let b2 = Math.imul(hash, GOLDEN) >>> this.bucket2Shift;
    if (b2 === b1) b2 ^= 1;
    return b2 * this.bucketSlots;
  }

  /** Slot of the packet's flow, or -1. An expired entry is freed and reported as absent. */
  lookup(frame: Uint8Array, p: ParsedPacket, hash: number, nowMs: number): number {
    const slot = this.probe(frame, p, hash);
    if (slot < 0 || !this.isExpired(slot, nowMs)) return slot;
    this.ctl[slot] = FLOW_EMPTY;
    this.nSize--;
    this.nExpirations++;
    return -1;
  }

  /** Slot of the packet's live flow, or -1, changing nothing (for `sluice explain`). */
  peek(frame: Uint8Array, p: ParsedPacket, hash: number, nowMs: number): number {
    const slot = this.probe(frame, p, hash);
    return slot >= 0 && !this.isExpired(slot, nowMs) ? slot : -1;
  }

  /** The slot holding the packet's key, expired or not, or -1. */
  private probe(frame: Uint8Array, p: ParsedPacket, hash: number): number {
    const keys = this.keys;
    const ctl = this.ctl;
    const bs = this.bucketSlots;
    const base1 = (hash & this.bucketMask) * bs;
    const base2 = this.probeSlots > bs ? this.secondBucket(hash) : 0;
    const tag = (hash >>> 24) & TAG_MASK;
    const meta = (p.ipVersion << 8) | p.protocol;
    const ports = ((p.srcPort << 16) | p.dstPort) >>> 0;
    const src0 = readBE32(frame, p.srcAddrOffset);
    const dst0 = readBE32(frame, p.dstAddrOffset);
    const v6 = p.addrLen === 16;
    for (let i = 0; i < this.probeSlots; i++) {
      const slot = i < bs ? base1 + i : base2 + i - bs;
      const c = ctl[slot];
      if ((c & TAG_MASK) !== tag || (c & STATE_MASK) === FLOW_EMPTY) continue;
      const b = slot * FLOW_KEY_WORDS;
      if (keys[b + 1] !== ports || keys[b + 2] !== src0 || keys[b + 6] !== dst0 || keys[b] !== meta) continue;
      if (v6 && !this.v6TailMatches(b, frame, p.srcAddrOffset, p.dstAddrOffset)) continue;
      return slot;
    }
    return -1;
  }

  /**
   * Record the packet's flow and return its slot. Reuses the flow's slot if present, else a
   * free (empty or expired) slot of whichever of its two buckets holds fewer live flows, else
   * evicts the least recently seen entry of both buckets (counted). The new entry is active,
   * created and last seen at nowMs.
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
    const keys = this.keys;
    const ctl = this.ctl;
    const lastSeen = this.lastSeen;
    const bs = this.bucketSlots;
    const base1 = (hash & this.bucketMask) * bs;
    const base2 = this.probeSlots > bs ? this.secondBucket(hash) : 0;
    const tag = (hash >>> 24) & TAG_MASK;
    const meta = (p.ipVersion << 8) | p.protocol;
    const ports = ((p.srcPort << 16) | p.dstPort) >>> 0;
    const src = p.srcAddrOffset;
    const dst = p.dstAddrOffset;
    const src0 = readBE32(frame, src);
    const dst0 = readBE32(frame, dst);
    const v6 = p.addrLen === 16;

    let target = -1;
    let free1 = -1;
    let free2 = -1;
    let live1 = 0;
    let live2 = 0;
    let oldest = -1;
    let oldestSeen = Infinity;
    for (let i = 0; i < this.probeSlots; i++) {
      const first = i < bs;
      const slot = first ? base1 + i : base2 + i - bs;
      const c = ctl[slot];
      if ((c & STATE_MASK) === FLOW_EMPTY) {
        if (first) {
          if (free1 < 0) free1 = slot;
        } else if (free2 < 0) free2 = slot;
        continue;
      }
      const b = slot * FLOW_KEY_WORDS;
      if (
        (c & TAG_MASK) === tag &&
        keys[b + 1] === ports &&
        keys[b + 2] === src0 &&
        keys[b + 6] === dst0 &&
        keys[b] === meta &&
        (!v6 || this.v6TailMatches(b, frame, src, dst))
      ) {
        target = slot;
        break;
      }
      if (this.isExpired(slot, nowMs)) {
        if (first) {
          if (free1 < 0) free1 = slot;
        } else if (free2 < 0) free2 = slot;
        continue;
      }
      if (first) live1++;
      else live2++;
      if (lastSeen[slot] < oldestSeen) {
        oldestSeen = lastSeen[slot];
        oldest = slot;
      }
    }

    if (target >= 0) {
      // Same flow already recorded: replace it (an expired one counts as expired).
      if (this.isExpired(target, nowMs)) this.nExpirations++;
    } else {
      const free = free1 >= 0 && (free2 < 0 || live1 <= live2) ? free1 : free2;
      if (free >= 0) {
        target = free;
        if ((ctl[target] & STATE_MASK) !== FLOW_EMPTY) this.nExpirations++;
        else this.nSize++;
      } else {
        target = oldest >= 0 ? oldest : base1; // oldest < 0 only if lastSeen holds NaN
        this.nEvictions++;
      }
      const b = target * FLOW_KEY_WORDS;
      keys[b] = meta;
      keys[b + 1] = ports;
      if (v6) {
        for (let w = 0; w < 4; w++) {
          keys[b + 2 + w] = readBE32(frame, src + 4 * w);
          keys[b + 6 + w] = readBE32(frame, dst + 4 * w);
        }
      } else {
        keys[b + 2] = src0;
        keys[b + 3] = 0;
        keys[b + 4] = 0;
        keys[b + 5] = 0;
        keys[b + 6] = dst0;
        keys[b + 7] = 0;
        keys[b + 8] = 0;
        keys[b + 9] = 0;
      }
    }
    ctl[target] = tag | FLOW_ACTIVE;
    lastSeen[target] = nowMs;
    this.createdMs[target] = nowMs;
    this.backendIds[target] = backendId;
    this.serviceIndexes[target] = serviceIndex;
    this.generations[target] = generation;
    this.nInserts++;
    return target;
  }

  /**
   * A packet of the flow was seen: refresh lastSeen; a FIN or RST moves an active flow to
   * closing (short timeout). Closing is not undone: a new SYN on the same 5-tuple keeps the
   * closing timeout until the caller remove()s and re-inserts the flow.
   */
  touch(slot: number, nowMs: number, tcpFlags: number): void {
    this.lastSeen[slot] = nowMs;
    const c = this.ctl[slot];
    if ((tcpFlags & (TCP_FIN | TCP_RST)) !== 0 && (c & STATE_MASK) === FLOW_ACTIVE) {
      this.ctl[slot] = (c & TAG_MASK) | FLOW_CLOSING;
    }
  }

  backendOf(slot: number): number {
    return this.backendIds[slot];
  }
  serviceOf(slot: number): number {
    return this.serviceIndexes[slot];
  }
  setBackend(slot: number, backendId: number): void {
    this.backendIds[slot] = backendId;
  }
  generationOf(slot: number): number {
    return this.generations[slot];
  }
  /** FLOW_EMPTY, FLOW_ACTIVE or FLOW_CLOSING. */
  stateOf(slot: number): number {
    return this.ctl[slot] & STATE_MASK;
  }
  lastSeenOf(slot: number): number {
    return this.lastSeen[slot];
  }
  createdOf(slot: number): number {
    return this.createdMs[slot];
  }
  ipVersionOf(slot: number): number {
    return this.keys[slot * FLOW_KEY_WORDS] >>> 8;
  }
  protocolOf(slot: number): number {
    return this.keys[slot * FLOW_KEY_WORDS] & 0xff;
  }

  /** Forget a flow. No-op on an empty or out-of-range slot. */
  remove(slot: number): void {
    if (slot < 0 || slot >= this.capacity || (this.ctl[slot] & STATE_MASK) === FLOW_EMPTY) return;
    this.ctl[slot] = FLOW_EMPTY;
    this.nSize--;
  }

  /** Forget every flow (counters other than size are kept). */
  clear(): void {
    this.ctl.fill(FLOW_EMPTY);
    this.nSize = 0;
    this.sweepCursor = 0;
  }

  /**
   * Timer work: examine up to maxSlots slots from where the last sweep stopped, free the
   * expired ones and return how many. A full pass takes capacity / maxSlots calls.
   */
  sweep(nowMs: number, maxSlots: number): number {
    const ctl = this.ctl;
    const mask = this.capacity - 1;
    const n = maxSlots < this.capacity ? maxSlots : this.capacity;
    let c = this.sweepCursor;
    let expired = 0;
    for (let i = 0; i < n; i++) {
      if ((ctl[c] & STATE_MASK) !== FLOW_EMPTY && this.isExpired(c, nowMs)) {
        ctl[c] = FLOW_EMPTY;
        expired++;
      }
      c = (c + 1) & mask;
    }
    this.sweepCursor = c;
    this.nSize -= expired;
    this.nExpirations += expired;
    return expired;
  }

  /**
   * Call cb(slot) for every occupied slot; with nowMs, skip entries whose timeout has passed.
   * cb may remove() or setBackend() the slot it is given. Control side (reloads, owner sync).
   */
  forEachSlot(cb: (slot: number) => void, nowMs?: number): void {
    const ctl = this.ctl;
    for (let slot = 0; slot < this.capacity; slot++) {
      if ((ctl[slot] & STATE_MASK) === FLOW_EMPTY) continue;
      if (nowMs !== undefined && this.isExpired(slot, nowMs)) continue;
      cb(slot);
    }
  }

  /** Decoded listing of up to `limit` live flows, for the admin API (allocates). */
  forEach(nowMs: number, cb: (entry: FlowEntryInfo) => void, limit = Infinity): void {
    let n = 0;
    for (let slot = 0; slot < this.capacity && n < limit; slot++) {
      if ((this.ctl[slot] & STATE_MASK) === FLOW_EMPTY || this.isExpired(slot, nowMs)) continue;
      cb(this.describe(slot, nowMs));
      n++;
    }
  }

  /** One slot decoded (allocates). The slot must be occupied. */
  describe(slot: number, nowMs: number): FlowEntryInfo {
    const k = this.keys;
    const b = slot * FLOW_KEY_WORDS;
    const v6 = k[b] >>> 8 === 6;
    // The canonical key holds src, dst, ports, protocol: format the addresses from it.
    const addrLen = v6 ? 16 : 4;
    this.keyOf(slot, this.keyScratch);
    return {
      slot,
      ipVersion: v6 ? 6 : 4,
      protocol: k[b] & 0xff,
      src: formatAddress(this.keyScratch, 0, addrLen),
      dst: formatAddress(this.keyScratch, addrLen, addrLen),
      srcPort: k[b + 1] >>> 16,
      dstPort: k[b + 1] & 0xffff,
      backendId: this.backendIds[slot],
      serviceIndex: this.serviceIndexes[slot],
      generation: this.generations[slot],
      ageMs: nowMs - this.createdMs[slot],
      idleMs: nowMs - this.lastSeen[slot],
      state: (this.ctl[slot] & STATE_MASK) === FLOW_CLOSING ? 'closing' : 'active',
    };
  }

  /**
   * Write the slot's canonical flow key (the bytes murmur3.flowHash hashes: src ++ dst ++
   * sport BE ++ dport BE ++ protocol) into out (>= 37 bytes); returns its length, 13 or 37.
   */
  keyOf(slot: number, out: Uint8Array): number {
    const k = this.keys;
    const b = slot * FLOW_KEY_WORDS;
    const words = k[b] >>> 8 === 6 ? 4 : 1;
    const addrLen = words * 4;
    for (let w = 0; w < words; w++) {
      const s = k[b + 2 + w];
      const d = k[b + 6 + w];
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
    const ports = k[b + 1];
    out[o] = ports >>> 24;
    out[o + 1] = (ports >>> 16) & 255;
    out[o + 2] = (ports >>> 8) & 255;
    out[o + 3] = ports & 255;
    out[o + 4] = k[b] & 255;
    return o + 5;
  }

  /** The flow hash of a stored flow (equal to flowHash() of its packets under the same seed). */
  flowHashOf(slot: number, seed: number): number {
    const len = this.keyOf(slot, this.keyScratch);
    return flowHashFromKey(this.keyScratch, (len - 5) >>> 1, seed);
  }

  private isExpired(slot: number, nowMs: number): boolean {
    const st = this.ctl[slot] & STATE_MASK;
    const timeout =
      st === FLOW_CLOSING
        ? this.tcpClosingMs
        : (this.keys[slot * FLOW_KEY_WORDS] & 0xff) === IPPROTO_TCP
          ? this.tcpIdleMs
          : this.udpIdleMs;
    return nowMs - this.lastSeen[slot] >= timeout;
  }

  /** Words 1..3 of both IPv6 addresses (word 0 was compared by the caller). */
  private v6TailMatches(b: number, frame: Uint8Array, src: number, dst: number): boolean {
    const k = this.keys;
    return (
      k[b + 3] === readBE32(frame, src + 4) &&
      k[b + 4] === readBE32(frame, src + 8) &&
      k[b + 5] === readBE32(frame, src + 12) &&
      k[b + 7] === readBE32(frame, dst + 4) &&
      k[b + 8] === readBE32(frame, dst + 8) &&
      k[b + 9] === readBE32(frame, dst + 12)
    );
  }
}
