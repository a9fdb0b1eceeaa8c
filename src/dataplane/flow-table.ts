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
 * Memory: FLOW_BYTES_PER_SLOT (54) bytes per slot plus 4 bytes of occupancy summary per 128 slots
 * (flow-layout.ts), about 57.6 bytes per flow of capacity.
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
 *
 * Files: flow-entry.ts (states, kinds, options), flow-open.ts (checks, format or attach),
 * flow-layout.ts (the buffer), flow-slots.ts (per-slot primitives), flow-placement.ts (lookup,
 * insert, relocation, eviction choice), flow-destinations.ts (shared destination addresses).
 */
import { flowHashFromKey } from '../hash/murmur3.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type ParsedPacket } from '../packet/parsed-packet.js';
import { R, R_BACKEND, R_LAST, R_TTOUCH, FLOW_CHUNK_SHIFT, H32, H64, layoutBytes, readGeometry } from './flow-layout.js';
import { CTL_HALF_OPEN, CTL_V6, FLOW_ACTIVE, FLOW_CLOSING, FLOW_EMPTY, FLOW_KIND_HALF_OPEN, FLOW_KIND_OTHER } from './flow-entry.js';
import { FLOW_TOKEN_HELD, STATE_MASK, TOKEN_MASK, TOKEN_SHIFT, type FlowEntryInfo, type FlowTableOptions, type FlowTimeouts } from './flow-entry.js';
import { ATTACH_CLOCK_LIMIT_MS, geometryFor, openFlowBuffer, roundUpPow2 } from './flow-open.js';
import { FlowSlots } from './flow-slots.js';
import { findFlow, insertFlow, lookupFlow } from './flow-placement.js';
import { describeFlow, writeFlowKey } from './flow-describe.js';

export { FLOW_BUCKET_SLOTS, FLOW_BYTES_PER_SLOT, FLOW_CHUNK_SLOTS, FLOW_LAYOUT_VERSION, FLOW_STASH_SLOTS, FLOW_MAX_DESTINATIONS } from './flow-layout.js';
// Everything a table's user needs is exported from here, as before the table was split.
export { FLOW_EMPTY, FLOW_ACTIVE, FLOW_CLOSING, FLOW_KIND_HALF_OPEN, FLOW_KIND_ESTABLISHED, FLOW_KIND_CLOSING } from './flow-entry.js';
export { FLOW_KIND_OTHER, FLOW_KIND_NAMES, FLOW_TOKEN_NONE, FLOW_TOKEN_HELD, FLOW_TOKEN_COLLIDED, FLOW_MAX_CAPACITY } from './flow-entry.js';
export { DEFAULT_HALF_OPEN_SHARE, DEFAULT_HALF_OPEN_MS, type FlowKindName, type FlowTimeouts, type FlowTableOptions, type FlowEntryInfo } from './flow-entry.js';
export { FLOW_PROBE_WINDOW } from './flow-placement.js';

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

  readonly #t: FlowSlots;
  readonly #h32: Uint32Array;
  readonly #h64: Float64Array;
  readonly #rec: Uint32Array;
  readonly #protect: boolean;
  readonly #keyScratch = new Uint8Array(37);

  /** Config-time: throws a RangeError on a bad capacity, timeout or share; an Error on a buffer it cannot use. */
  constructor(capacity: number, timeouts: FlowTimeouts, options: FlowTableOptions = {}) {
    const o = openFlowBuffer(capacity, timeouts, options);
    const cap = o.capacity;
    const halfOpenMs = o.halfOpenMs;
    const v = o.views;
    this.capacity = cap;
    this.buffer = o.buffer;
    this.halfOpenLimit = Math.max(1, Math.floor(cap * o.halfOpenShare + 1e-9)); // + 1e-9: a share read back from a limit gives that limit
    this.timeouts = { tcpIdleMs: timeouts.tcpIdleMs, tcpClosingMs: timeouts.tcpClosingMs, udpIdleMs: timeouts.udpIdleMs, halfOpenMs };
    this.#protect = options.floodProtection !== false;
    this.#t = new FlowSlots(
      v,
      o.geometry,
      {
        tcpIdleMs: timeouts.tcpIdleMs,
        tcpClosingMs: timeouts.tcpClosingMs,
        udpIdleMs: timeouts.udpIdleMs,
        halfOpenMs: this.#protect ? halfOpenMs : timeouts.tcpIdleMs,
      },
      this.halfOpenLimit,
    );
    this.slots = this.#t.slots;
    this.discardSlot = this.slots;
    this.#h32 = v.h32;
    this.#h64 = v.h64;
    this.#rec = v.rec;
    const h = this.#h32;
    h[H32.tcpIdleMs] = timeouts.tcpIdleMs;
    h[H32.tcpClosingMs] = timeouts.tcpClosingMs;
    h[H32.udpIdleMs] = timeouts.udpIdleMs;
    h[H32.halfOpenMs] = halfOpenMs;
    h[H32.halfOpenLimit] = this.halfOpenLimit;
    if (options.hashSeed !== undefined) this.setHashSeed(options.hashSeed);
    if (options.attach !== undefined) {
      this.#t.recount();
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
    return this.#t.epoch;
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

  /** Slot of the packet's flow, or -1. An expired entry is freed and reported as absent. */
  lookup(frame: Uint8Array, p: ParsedPacket, hash: number, nowMs: number): number {
    return lookupFlow(this.#t, frame, p, hash, nowMs);
  }

  /** Slot of the packet's live flow, or -1, changing nothing (for `sluice explain`). */
  peek(frame: Uint8Array, p: ParsedPacket, hash: number, nowMs: number): number {
    const s = findFlow(this.#t, frame, p, hash);
    return s >= 0 && !this.#t.expired(s, this.#t.rel(nowMs)) ? s : -1;
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
    return insertFlow(this.#t, this.#protect, this.capacity, this.discardSlot, frame, p, hash, nowMs, backendId, serviceIndex, generation);
  }

  /**
   * A packet of the flow was seen: refresh lastSeen. A FIN or RST moves an active flow to closing
   * (short timeout); a half-open flow's first packet with ACK and without SYN completes its
   * handshake (established). Closing is not undone: a new SYN on the same 5-tuple keeps the
   * closing timeout until the caller remove()s and re-inserts the flow.
   */
  touch(slot: number, nowMs: number, tcpFlags: number): void {
    const t = this.#t;
    this.#rec[slot * R + R_LAST] = t.rel(nowMs);
    const c = t.ctlOf(slot);
    if ((c & STATE_MASK) !== FLOW_ACTIVE) return;
    if ((tcpFlags & (TCP_FIN | TCP_RST)) !== 0) {
      t.setCtl(slot, (c & ~(STATE_MASK | CTL_HALF_OPEN)) | FLOW_CLOSING);
    } else if ((c & CTL_HALF_OPEN) !== 0 && (tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_ACK) {
      t.setCtl(slot, c & ~CTL_HALF_OPEN);
    } else {
      return;
    }
    if ((c & CTL_HALF_OPEN) !== 0 && slot !== this.discardSlot) this.#h64[H64.halfOpen]--;
  }

  backendOf(slot: number): number {
    return this.#rec[slot * R + R_BACKEND] | 0;
  }
  serviceOf(slot: number): number {
    return this.#t.service[slot];
  }
  setBackend(slot: number, backendId: number): void {
    this.#rec[slot * R + R_BACKEND] = backendId;
  }
  generationOf(slot: number): number {
    return this.#t.generation[slot];
  }
  /** FLOW_EMPTY, FLOW_ACTIVE or FLOW_CLOSING. */
  stateOf(slot: number): number {
    return this.#t.ctlOf(slot) & STATE_MASK;
  }
  /** FLOW_KIND_* of an occupied slot. */
  kindOf(slot: number): number {
    return this.#t.kindOf(slot);
  }
  /** Wall-clock ms the flow was last seen. */
  lastSeenOf(slot: number): number {
    return this.#t.absolute(this.#rec[slot * R + R_LAST]);
  }
  /** Wall-clock ms the flow was created. */
  createdOf(slot: number): number {
    return this.#t.absolute(this.#t.created[slot]);
  }
  ipVersionOf(slot: number): number {
    return (this.#t.ctlOf(slot) & CTL_V6) !== 0 ? 6 : 4;
  }
  protocolOf(slot: number): number {
    return this.#t.protoOf(slot);
  }

  /** FLOW_TOKEN_NONE, FLOW_TOKEN_HELD or FLOW_TOKEN_COLLIDED. */
  tokenStateOf(slot: number): number {
    return (this.#t.ctlOf(slot) & TOKEN_MASK) >>> TOKEN_SHIFT;
  }
  /** The MPTCP token recorded for the flow's connection (meaningful unless the state is FLOW_TOKEN_NONE). */
  tokenOf(slot: number): number {
    return this.#t.token[slot];
  }
  /** Record the flow's MPTCP token state and token; `nowMs` counts as its last refresh. */
  setToken(slot: number, state: number, token: number, nowMs: number): void {
    const t = this.#t;
    t.setCtl(slot, (t.ctlOf(slot) & ~TOKEN_MASK) | ((state << TOKEN_SHIFT) & TOKEN_MASK));
    t.token[slot] = token >>> 0;
    this.#rec[slot * R + R_TTOUCH] = t.rel(nowMs);
  }
  /**
   * True (and the refresh recorded) when the flow holds a token last refreshed at least
   * `intervalMs` ago: the caller then refreshes the token in the token table.
   */
  tokenRefreshDue(slot: number, nowMs: number, intervalMs: number): boolean {
    const t = this.#t;
    if ((t.ctlOf(slot) & TOKEN_MASK) !== FLOW_TOKEN_HELD << TOKEN_SHIFT) return false;
    const now = t.rel(nowMs);
    if (((now - this.#rec[slot * R + R_TTOUCH]) | 0) < intervalMs) return false;
    this.#rec[slot * R + R_TTOUCH] = now;
    return true;
  }

  /** Forget a flow. No-op on an empty or out-of-range slot (and on the discard slot). */
  remove(slot: number): void {
    if (!(slot >= 0 && slot < this.slots) || (this.#t.ctlOf(slot) & STATE_MASK) === FLOW_EMPTY) return;
    this.#t.release(slot);
  }

  /** Forget every flow (counters other than size and half-open are kept). Reads only chunks that hold entries. */
  clear(): void {
    const t = this.#t;
    const live = t.chunkLive;
    for (let k = 0, n = t.chunks; k < n; k++) {
      if (live[k] === 0) continue;
      t.chunksRead++;
      this.#rec.fill(0, (k << FLOW_CHUNK_SHIFT) * R, t.chunkEnd(k) * R);
      live[k] = 0;
    }
    this.#rec.fill(0, this.discardSlot * R, (this.discardSlot + 1) * R);
    t.dest.clear();
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
    return this.#t.sweep(nowMs, maxSlots);
  }

  /**
   * Call cb(slot) for every occupied slot; with nowMs, skip entries whose timeout has passed.
   * cb may remove() or setBackend() the slot it is given, but must not insert. Control side.
   * Chunks with no entry are skipped unread (the occupancy summary).
   */
  forEachSlot(cb: (slot: number) => void, nowMs?: number): void {
    const t = this.#t;
    const live = t.chunkLive;
    const now = nowMs === undefined ? 0 : t.rel(nowMs);
    for (let k = 0, chunks = t.chunks; k < chunks; k++) {
      if (live[k] === 0) continue;
      t.chunksRead++;
      for (let slot = k << FLOW_CHUNK_SHIFT, end = t.chunkEnd(k); slot < end; slot++) {
        if ((t.ctlOf(slot) & STATE_MASK) === FLOW_EMPTY) continue;
        if (nowMs !== undefined && t.expired(slot, now)) continue;
        cb(slot);
      }
    }
  }

  /** Decoded listing of up to `limit` live flows, for the admin API (allocates). */
  forEach(nowMs: number, cb: (entry: FlowEntryInfo) => void, limit = Infinity): void {
    let n = 0;
    const now = this.#t.rel(nowMs);
    const t = this.#t;
    const live = t.chunkLive;
    for (let k = 0, chunks = t.chunks; k < chunks && n < limit; k++) {
      if (live[k] === 0) continue;
      t.chunksRead++;
      for (let slot = k << FLOW_CHUNK_SHIFT, end = t.chunkEnd(k); slot < end && n < limit; slot++) {
        if ((t.ctlOf(slot) & STATE_MASK) === FLOW_EMPTY || t.expired(slot, now)) continue;
        cb(this.describe(slot, nowMs));
        n++;
      }
    }
  }

  /** Chunks of FLOW_CHUNK_SLOTS slots whose slots scans have read so far (tests and diagnostics). */
  get chunksRead(): number {
    return this.#t.chunksRead;
  }

  /** Live entries the occupancy summary records for chunk k (tests and diagnostics). */
  chunkLiveOf(k: number): number {
    return this.#t.chunkLive[k];
  }

  /** One slot decoded (allocates). The slot must be occupied. Ages wrap after 49.7 days. */
  describe(slot: number, nowMs: number): FlowEntryInfo {
    return describeFlow(this.#t, slot, nowMs, this.#keyScratch);
  }

  /**
   * Write the slot's canonical flow key (the bytes murmur3.flowHash hashes: src ++ dst ++
   * sport BE ++ dport BE ++ protocol) into out (>= 37 bytes); returns its length, 13 or 37.
   */
  keyOf(slot: number, out: Uint8Array): number {
    return writeFlowKey(this.#t, slot, out);
  }

  /** The flow hash of a stored flow (equal to flowHash() of its packets under the same seed). */
  flowHashOf(slot: number, seed: number): number {
    const len = this.keyOf(slot, this.#keyScratch);
    return flowHashFromKey(this.#keyScratch, (len - 5) >>> 1, seed);
  }

  /** Live flows pointing at destination entry i (tests and diagnostics). */
  destinationRefs(i: number): number {
    return this.#t.dest.refsOf(i);
  }
}
