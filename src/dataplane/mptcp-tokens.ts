/**
 * MPTCP token table: token (uint32, the server's token) -> the backend of that MPTCP
 * connection, so that every later MP_JOIN SYN (which carries the token, on a new 5-tuple)
 * reaches the backend that owns the connection (docs/DESIGN.md invariant 4).
 *
 * Sluice sees client->server packets only, so the token is learned from the client's third
 * ACK (or first data segment), whose MP_CAPABLE carries the server's key: token =
 * SHA-256(key)[0..3] (SHA-1 for v0). Learning must happen inline, before that packet is
 * forwarded: Linux clients open joins ~1 ms later (docs/PROTOCOLS.md).
 *
 * Lifetime: an entry lives while any subflow of its connection lives. The table does not count
 * subflows (a missed release would leak an entry forever); instead each entry has a last-seen
 * time that the forwarder refreshes with touch() whenever it sees a subflow of the connection
 * (it keeps the token beside the flow in the flow table), and an idle timeout (default: the TCP
 * idle timeout) removes entries whose subflows all went quiet. remove() is for an explicit end
 * (for example MP_FASTCLOSE, or a control-plane withdrawal).
 *
 * Storage: open addressing in typed arrays, capacity a power of two. A token probes a window
 * of `probeWindow` consecutive slots starting at a seeded mix of the token (tokens are SHA
 * outputs, but a client chooses its keys, so the seed keeps it from aiming at one window).
 * Lookups scan the whole window, so removal leaves no tombstones. A full window evicts its
 * least recently seen entry (counted). Tokens collide across backends (~N^2/2^33 pairs for N
 * connections): the first owner is kept and the collision counted, never overwritten.
 *
 * Hot path (learn, lookup, touch): no allocation, no closures, no exceptions.
 *
 * Shared by data-plane workers: the whole state (header with seed, window, writer lock, live
 * count and sweep cursor; then the slot arrays and a sequence number per slot) lives in one
 * buffer. A private table owns an ArrayBuffer; `MptcpTokenTable.sharedBuffer()` makes a
 * SharedArrayBuffer that `MptcpTokenTable.over()` opens in every worker thread, so an MP_JOIN
 * that the kernel's fanout hash gives to another worker finds the token its connection's worker
 * learned. One code path serves both (a private table pays the same few atomics: a lock and two
 * sequence stores per write, two sequence loads per lookup hit, none per miss). Writers (learn, remove, sweep, clear, and a lookup that finds an expired entry) are
 * rare, once per MPTCP connection, and serialize on the header's lock word. Readers take no lock:
 * each slot has a seqlock (odd while a writer changes it), a reader re-reads the slot's sequence
 * after its fields and retries on a change, so it never returns half of one entry and half of
 * another (docs/DESIGN.md "Tables shared by workers").
 *
 * How the forwarder uses it per packet: docs/DESIGN.md section 3 ("MPTCP tokens in the path").
 */
import { TableLock, repairMidWrite } from './table-lock.js';
import { randomInt } from 'node:crypto';
import type { ParsedPacket } from '../packet/parsed-packet.js';
import {
  MPTCP_ABSENT,
  MPTCP_FORM_CAPABLE_ACK,
  MPTCP_FORM_CAPABLE_DATA,
  MPTCP_FORM_JOIN_SYN,
  MPTCP_OK,
  MPTCP_UNKNOWN_SUBTYPE,
  type MptcpInfo,
  decodeMptcp,
  readToken,
} from '../packet/mptcp-options.js';
import { mptcpToken } from '../hash/sha-small.js';

/** learn(): a new entry was stored. */
export const LEARN_NEW = 0;
/** learn(): the token is already owned by the same backend (retransmission, repeated MP_CAPABLE). */
export const LEARN_REFRESHED = 1;
/** learn(): the token is owned by another backend; the first owner is kept. */
export const LEARN_COLLISION = 2;
/** learn(): the writer lock of a shared table stayed held past its bound; nothing changed (counted in lockTimeouts). */
export const LEARN_BUSY = 3;

export const DEFAULT_TOKEN_IDLE_TIMEOUT_MS = 300_000;
export const DEFAULT_PROBE_WINDOW = 8;

export interface MptcpTokenTableOptions {
  /** Number of slots, a power of two >= probeWindow. With `buffer`: taken from the buffer (a different value is an error). */
  capacity: number;
  /** An entry not learned or touched for this long is gone. Default 300 000 (TCP idle). */
  idleTimeoutMs?: number;
  /** Slots probed per token. Default 8. With `buffer`: taken from the buffer. */
  probeWindow?: number;
  /** Seed of the slot mix; default random per table. Tests pass one to be deterministic. With `buffer`: taken from the buffer. */
  seed?: number;
  /** A buffer made by MptcpTokenTable.sharedBuffer(): the table lives there, shared with every other table over it. */
  buffer?: SharedArrayBuffer;
  /**
   * TEST ONLY: skip the writer lock and the per-slot seqlock (each instance gets a private lock
   * word and private sequence numbers), to show what the concurrency tests would catch.
   */
  unsafeUnlocked?: boolean;
  /**
   * This writer's mark in the lock word while it holds it (an integer 1..2^31-1, default 1): give
   * each worker its own (its index + 1), so that after a worker thread exits the thread that
   * started it can call MptcpTokenTable.releaseLockOf(buffer, writerId).
   */
  writerId?: number;
}

/** What over() needs beyond the buffer: the timeout is per worker configuration, not table state. */
export interface MptcpTokenTableSharing {
  idleTimeoutMs?: number;
  /** TEST ONLY: see MptcpTokenTableOptions.unsafeUnlocked. */
  unsafeUnlocked?: boolean;
  /** See MptcpTokenTableOptions.writerId. */
  writerId?: number;
}

export interface MptcpTokenEntry {
  token: number;
  backendId: number;
  serviceIndex: number;
  version: number;
  lastSeenMs: number;
}

// Header: Int32 words at the start of the buffer.
const H_MAGIC = 0;
const H_CAPACITY = 1;
const H_WINDOW = 2;
/** In the buffer so that every worker computes the same probe window for a token. */
const H_SEED = 3;
/** 0 free, else the writerId of the table holding it. */
const H_LOCK = 4;
/** Live entries, changed by writers only (under the lock); `active` of every table over the buffer. */
const H_ACTIVE = 5;
/** Next slot to sweep; a sweep claims its slice with one Atomics.add, so workers sweep different slices. */
const H_SWEEP = 6;
const HEADER_WORDS = 16;
const HEADER_BYTES = HEADER_WORDS * 4;
const TOKEN_TABLE_MAGIC = 0x534c546b; // "SLTk"
/** lastSeen (f64) + seq, token, backend, service, state (i32 each). */
const SLOT_BYTES = 8 + 5 * 4;

/** A reader that keeps finding a slot mid-write treats it as not matching (a writer that died there must not stall forwarding). */
const READ_RETRIES = 64;

export class MptcpTokenTable {
  readonly capacity: number;
  readonly idleTimeoutMs: number;
  readonly probeWindow: number;
  /** The table's storage: hand it to MptcpTokenTable.over() in another thread to share the table (when it is a SharedArrayBuffer). */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;

  readonly #mask: number;
  readonly #seed: number;
  readonly #header: Int32Array;
  /** The writer lock: H_LOCK of the header, or a private word in unsafeUnlocked mode. */
  readonly #writer: TableLock;
  readonly #seq: Int32Array;
  readonly #token: Uint32Array;
  readonly #backend: Int32Array;
  readonly #service: Int32Array;
  readonly #lastSeen: Float64Array;
  /** 0 = empty slot; otherwise MPTCP version + 1. */
  readonly #state: Int32Array;

  /**
   * The entry the last lookupSlot/peekSlot found, read consistently under its seqlock:
   * backendAt/serviceAt/versionAt of that slot answer from here, so another worker reusing
   * the slot in between cannot mix a later entry into this one's answer.
   */
  #foundSlot = -1;
  #foundBackend = 0;
  #foundService = 0;
  #foundVersion = 0;
  // Scratch of #readEntry (no allocation per read).
  #readState = 0;
  #readBackend = 0;
  #readService = 0;
  #readSeen = 0;

  // Per instance (per worker): the scrape sums them over workers.
  #learnedV0 = 0;
  #learnedV1 = 0;
  #refreshed = 0;
  #collisions = 0;
  #evictions = 0;
  #expired = 0;
  #hits = 0;
  #misses = 0;

  /** Bytes of a table buffer for `capacity` slots. */
  static bytesFor(capacity: number): number {
    return HEADER_BYTES + capacity * SLOT_BYTES;
  }

  /**
   * A SharedArrayBuffer holding an empty table (seed drawn here unless given), for
   * MptcpTokenTable.over() in each worker. Call it once, in the thread that starts the workers.
   */
  static sharedBuffer(capacity: number, options: { probeWindow?: number; seed?: number } = {}): SharedArrayBuffer {
    const probeWindow = options.probeWindow ?? DEFAULT_PROBE_WINDOW;
    checkShape(capacity, probeWindow);
    const buffer = new SharedArrayBuffer(MptcpTokenTable.bytesFor(capacity));
    initHeader(buffer, capacity, probeWindow, options.seed);
    return buffer;
  }

  /** A table over a buffer from sharedBuffer(): same entries as every other table over it. */
  static over(buffer: SharedArrayBuffer, options: MptcpTokenTableSharing = {}): MptcpTokenTable {
    if (buffer.byteLength < HEADER_BYTES) throw new RangeError(`MptcpTokenTable: buffer of ${buffer.byteLength} bytes is not a token table`);
    const capacity = new Int32Array(buffer, 0, HEADER_WORDS)[H_CAPACITY];
    return new MptcpTokenTable({ capacity, buffer, idleTimeoutMs: options.idleTimeoutMs, unsafeUnlocked: options.unsafeUnlocked, writerId: options.writerId });
  }

  /**
   * After a worker thread exited (crashed or terminated): if it died holding the writer lock,
   * repair what it may have left half done and free the lock. A slot it was writing (odd
   * sequence) is emptied and the live count recounted, under the lock. Call it from the thread
   * that started the workers, once the worker's 'exit' was seen; true if the lock was its.
   * O(capacity), once per such exit.
   */
  static releaseLockOf(buffer: SharedArrayBuffer, writerId: number): boolean {
    const t = MptcpTokenTable.over(buffer, { writerId });
    const h = new Int32Array(buffer, 0, HEADER_WORDS);
    if (!TableLock.heldBy(h, H_LOCK, writerId)) return false;
    t.#repairHeld();
    return TableLock.release(h, H_LOCK, writerId);
  }

  /** The lock is held (by a dead writer, now ours): empty slots left mid-write, recount live entries. */
  #repairHeld(): void {
    Atomics.store(this.#header, H_ACTIVE, repairMidWrite(this.#seq, this.#state, this.capacity));
  }

  constructor(options: MptcpTokenTableOptions) {
    const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_TOKEN_IDLE_TIMEOUT_MS;
    if (!(idleTimeoutMs > 0)) {
      throw new RangeError(`MptcpTokenTable: idleTimeoutMs must be > 0, got ${idleTimeoutMs}`);
    }
    let buffer: ArrayBuffer | SharedArrayBuffer;
    if (options.buffer === undefined) {
      const probeWindow = options.probeWindow ?? DEFAULT_PROBE_WINDOW;
      checkShape(options.capacity, probeWindow);
      buffer = new ArrayBuffer(MptcpTokenTable.bytesFor(options.capacity));
      initHeader(buffer, options.capacity, probeWindow, options.seed);
    } else {
      buffer = options.buffer;
      const h = new Int32Array(buffer, 0, HEADER_WORDS);
      if (h[H_MAGIC] !== TOKEN_TABLE_MAGIC) throw new RangeError('MptcpTokenTable: the buffer was not made by MptcpTokenTable.sharedBuffer()');
      checkShape(h[H_CAPACITY], h[H_WINDOW]);
      if (options.capacity !== h[H_CAPACITY]) throw new RangeError(`MptcpTokenTable: capacity ${options.capacity} differs from the buffer's ${h[H_CAPACITY]}`);
      if (buffer.byteLength < MptcpTokenTable.bytesFor(h[H_CAPACITY])) throw new RangeError('MptcpTokenTable: buffer shorter than its capacity needs');
    }
    this.buffer = buffer;
    this.#header = new Int32Array(buffer, 0, HEADER_WORDS);
    const capacity = this.#header[H_CAPACITY];
    this.capacity = capacity;
    this.probeWindow = this.#header[H_WINDOW];
    this.idleTimeoutMs = idleTimeoutMs;
    this.#mask = capacity - 1;
    this.#seed = this.#header[H_SEED];
    // Float64 first: the header is 64 bytes, so it is 8-byte aligned.
    let off = HEADER_BYTES;
    this.#lastSeen = new Float64Array(buffer, off, capacity);
    off += capacity * 8;
    this.#seq = new Int32Array(buffer, off, capacity);
    off += capacity * 4;
    this.#token = new Uint32Array(buffer, off, capacity);
    off += capacity * 4;
    this.#backend = new Int32Array(buffer, off, capacity);
    off += capacity * 4;
    this.#service = new Int32Array(buffer, off, capacity);
    off += capacity * 4;
    this.#state = new Int32Array(buffer, off, capacity);
    const unsafe = options.unsafeUnlocked === true;
    if (unsafe) this.#seq = new Int32Array(capacity);
    this.#writer = new TableLock(unsafe ? new Int32Array(HEADER_WORDS) : this.#header, H_LOCK, options.writerId ?? 1, 'MptcpTokenTable');
  }

  /** First slot of the token's probe window. */
  bucketOf(token: number): number {
    let h = Math.imul(token ^ this.#seed, 0x9e3779b1);
    h ^= h >>> 15;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    return h & this.#mask;
  }

  /**
   * Records that `token` belongs to `backendId` (>= 0, a stable global backend id).
   * Returns LEARN_NEW, LEARN_REFRESHED (same backend; its last-seen time is refreshed),
   * LEARN_COLLISION (another backend owns the token; nothing changes) or LEARN_BUSY (the lock
   * of a shared table could not be had; nothing changes).
   *
   * The whole scan runs under the writer lock: two workers learning one token at once (both
   * saw the connection's key) end with one entry, the second finds the first's under the lock.
   */
  learn(token: number, backendId: number, serviceIndex: number, version: number, nowMs: number): number {
    if (!this.#writer.lock()) return LEARN_BUSY;
    const r = this.#learnLocked(token >>> 0, backendId, serviceIndex, version, nowMs);
    this.#writer.unlock();
    return r;
  }

  #learnLocked(token: number, backendId: number, serviceIndex: number, version: number, nowMs: number): number {
    // Under the lock no other writer runs, so plain reads see settled entries (touch() may still store lastSeen).
    const mask = this.#mask;
    const start = this.bucketOf(token);
    let free = -1;
    let oldest = -1;
    let oldestSeen = Infinity;
    for (let i = 0; i < this.probeWindow; i++) {
      const s = (start + i) & mask;
      if (this.#state[s] === 0) {
        if (free < 0) free = s;
        continue;
      }
      if (nowMs - this.#lastSeen[s] > this.idleTimeoutMs) {
        this.#clear(s);
        this.#expired++;
        if (free < 0) free = s;
        continue;
      }
      if (this.#token[s] === token) {
        if (this.#backend[s] === backendId) {
          if (nowMs > this.#lastSeen[s]) this.#lastSeen[s] = nowMs;
          this.#refreshed++;
          return LEARN_REFRESHED;
        }
        this.#collisions++;
        return LEARN_COLLISION;
      }
      if (this.#lastSeen[s] < oldestSeen) {
        oldestSeen = this.#lastSeen[s];
        oldest = s;
      }
    }
    if (free < 0) {
      free = oldest;
      this.#clear(free);
      this.#evictions++;
    }
    if (free === this.#foundSlot) this.#foundSlot = -1;
    const seq = this.#seq;
    const q = seq[free] | 1;
    Atomics.store(seq, free, q); // odd: readers of this slot retry until the entry is whole
    this.#token[free] = token;
    this.#backend[free] = backendId;
    this.#service[free] = serviceIndex;
    this.#lastSeen[free] = nowMs;
    this.#state[free] = version === 0 ? 1 : 2;
    Atomics.store(seq, free, q + 1); // even: the entry is whole
    Atomics.add(this.#header, H_ACTIVE, 1);
    if (version === 0) this.#learnedV0++;
    else this.#learnedV1++;
    return LEARN_NEW;
  }

  /**
   * Reads the entry in slot `s` into the #read* scratch under its seqlock; true if it is whole
   * and holds `token`. Called only for a slot whose plain-read state and token looked like a
   * match: the scan of a window reads plainly (a torn plain read can only make a slot look like
   * a match, which this re-read settles, or miss an entry a writer is adding right now, which a
   * lookup racing that learn may do anyway), so a miss costs no atomics.
   *
   * Atomics.load of the sequence before and after plain loads of the fields: the classic seqlock.
   * Atomics are not inlined by Node 20's compiler (~35 ns a call measured, against ~3 ns for a
   * plain load), so only the two sequence reads are atomic; the field loads between them stay
   * in program order around those calls (V8 keeps typed-array loads on its effect chain) and
   * x86-64 does not reorder loads with loads.
   */
  #readEntry(s: number, token: number): boolean {
    const seq = this.#seq;
    for (let tries = 0; tries < READ_RETRIES; tries++) {
      const before = Atomics.load(seq, s);
      if ((before & 1) !== 0) continue;
      const state = this.#state[s];
      const tok = this.#token[s];
      const backend = this.#backend[s];
      const service = this.#service[s];
      const seen = this.#lastSeen[s];
      if (Atomics.load(seq, s) !== before) continue;
      if (state === 0 || tok !== token) return false;
      this.#readState = state;
      this.#readBackend = backend;
      this.#readService = service;
      this.#readSeen = seen;
      return true;
    }
    return false;
  }

  /** Slot of the live entry for `token`, or -1. An expired entry found on the way is removed (if the lock is free). */
  lookupSlot(token: number, nowMs: number): number {
    token = token >>> 0;
    const mask = this.#mask;
    const start = this.bucketOf(token);
    for (let i = 0; i < this.probeWindow; i++) {
      const s = (start + i) & mask;
      if (this.#state[s] === 0 || this.#token[s] !== token || !this.#readEntry(s, token)) continue;
      if (nowMs - this.#readSeen > this.idleTimeoutMs) {
        this.#expireIfStill(s, token, nowMs);
        break;
      }
      this.#found(s);
      this.#hits++;
      return s;
    }
    this.#misses++;
    return -1;
  }

  /** Slot of the live entry for `token`, or -1, changing nothing (no expiry, no hit/miss count). */
  peekSlot(token: number, nowMs: number): number {
    token = token >>> 0;
    const mask = this.#mask;
    const start = this.bucketOf(token);
    for (let i = 0; i < this.probeWindow; i++) {
      const s = (start + i) & mask;
      if (this.#state[s] === 0 || this.#token[s] !== token || !this.#readEntry(s, token)) continue;
      if (nowMs - this.#readSeen > this.idleTimeoutMs) return -1;
      this.#found(s);
      return s;
    }
    return -1;
  }

  /** Backend id owning `token`, or -1 if unknown or expired. */
  lookup(token: number, nowMs: number): number {
    const s = this.lookupSlot(token, nowMs);
    return s < 0 ? -1 : this.#foundBackend;
  }

  /** Backend of the entry in `slot`: as read by the last lookupSlot/peekSlot that returned `slot`, else as the slot is now. */
  backendAt(slot: number): number {
    return slot === this.#foundSlot ? this.#foundBackend : this.#backend[slot];
  }

  serviceAt(slot: number): number {
    return slot === this.#foundSlot ? this.#foundService : this.#service[slot];
  }

  /** MPTCP version (0 or 1) of the entry in `slot`. */
  versionAt(slot: number): number {
    return slot === this.#foundSlot ? this.#foundVersion : this.#state[slot] - 1;
  }

  lastSeenAt(slot: number): number {
    return this.#lastSeen[slot];
  }

  /**
   * A subflow of the token's connection was seen at `nowMs` (never moves last-seen back).
   * Returns false if the token is not in the table (expired, evicted or never learned).
   *
   * The refresh is a plain store outside the lock and seqlock: a refresh lost to a racing
   * writer (or two workers refreshing at once) only leaves last-seen a few seconds older than
   * it could be, while the idle timeout is minutes and the flow refreshes again; one landing on
   * a slot another worker just reused (or emptied) sets a fresh time on a fresh entry, or on an
   * empty slot whose next writer overwrites it. An aligned Float64 store is one instruction on
   * the 64-bit targets Node runs on, so a reader never sees half of it.
   */
  touch(token: number, nowMs: number): boolean {
    const s = this.lookupSlot(token, nowMs);
    if (s < 0) return false;
    if (nowMs > this.#lastSeen[s]) this.#lastSeen[s] = nowMs;
    return true;
  }

  /** Removes the token's entry; false if it was not there (or the lock of a shared table could not be had). */
  remove(token: number): boolean {
    token = token >>> 0;
    if (!this.#writer.lock()) return false;
    const mask = this.#mask;
    const start = this.bucketOf(token);
    let removed = false;
    for (let i = 0; i < this.probeWindow; i++) {
      const s = (start + i) & mask;
      if (this.#state[s] !== 0 && this.#token[s] === token) {
        this.#clear(s);
        removed = true;
        break;
      }
    }
    this.#writer.unlock();
    return removed;
  }

  /**
   * Examines up to `maxSlots` slots from where the last sweep (of any table over the buffer)
   * stopped and removes expired entries. Returns how many were removed. Call it from a timer
   * with a small budget. Slots are read without the lock; an expired-looking one is re-checked
   * and removed under it.
   */
  sweep(nowMs: number, maxSlots: number): number {
    const n = maxSlots < this.capacity ? maxSlots : this.capacity;
    let removed = 0;
    let s = Atomics.add(this.#header, H_SWEEP, n) & this.#mask;
    for (let i = 0; i < n; i++) {
      if (this.#state[s] !== 0 && nowMs - this.#lastSeen[s] > this.idleTimeoutMs && this.#writer.lock()) {
        if (this.#state[s] !== 0 && nowMs - this.#lastSeen[s] > this.idleTimeoutMs) {
          this.#clear(s);
          this.#expired++;
          removed++;
        }
        this.#writer.unlock();
      }
      s = (s + 1) & this.#mask;
    }
    return removed;
  }

  /** Empties the table (for every table over the buffer); counters other than `active` are kept. */
  clear(): void {
    if (!this.#writer.lock()) return;
    for (let s = 0; s < this.capacity; s++) if (this.#state[s] !== 0) this.#clear(s);
    Atomics.store(this.#header, H_SWEEP, 0);
    this.#writer.unlock();
  }

  /** Live entries, for the control plane (owner sync) and `sluice flows`. Not for the hot path. */
  *entries(nowMs: number): Generator<MptcpTokenEntry> {
    for (let s = 0; s < this.capacity; s++) {
      // The slot's own token is the one wanted, so the whole entry is read.
      const tok = this.#token[s];
      if (this.#state[s] === 0 || !this.#readEntry(s, tok)) continue;
      if (nowMs - this.#readSeen > this.idleTimeoutMs) continue;
      yield {
        token: tok,
        backendId: this.#readBackend,
        serviceIndex: this.#readService,
        version: this.#readState - 1,
        lastSeenMs: this.#readSeen,
      };
    }
  }

  get learnedV0(): number {
    return this.#learnedV0;
  }
  get learnedV1(): number {
    return this.#learnedV1;
  }
  get refreshed(): number {
    return this.#refreshed;
  }
  get collisions(): number {
    return this.#collisions;
  }
  /** Live entries pushed out because their probe window was full. */
  get evictions(): number {
    return this.#evictions;
  }
  /** Entries removed by the idle timeout (sweep, or found stale by learn/lookup). */
  get expired(): number {
    return this.#expired;
  }
  /** Live entries of the whole table (shared: of every worker; do not sum it over workers). */
  get active(): number {
    return Atomics.load(this.#header, H_ACTIVE);
  }
  get lookupHits(): number {
    return this.#hits;
  }
  get lookupMisses(): number {
    return this.#misses;
  }
  /** Writes given up because another writer held the lock of a shared table past the bound. */
  get lockTimeouts(): number {
    return this.#writer.timeouts;
  }

  #found(s: number): void {
    this.#foundSlot = s;
    this.#foundBackend = this.#readBackend;
    this.#foundService = this.#readService;
    this.#foundVersion = this.#readState - 1;
  }

  /** A reader found `token` expired in `s`: remove it if the lock is free right now (else the sweep will); never waits. */
  #expireIfStill(s: number, token: number, nowMs: number): void {
    if (!this.#writer.tryLock()) return;
    if (this.#state[s] !== 0 && this.#token[s] === token && nowMs - this.#lastSeen[s] > this.idleTimeoutMs) {
      this.#clear(s);
      this.#expired++;
    }
    this.#writer.unlock();
  }


  /** Empties slot `s`; the caller holds the lock. */
  #clear(s: number): void {
    if (s === this.#foundSlot) this.#foundSlot = -1;
    const q = this.#seq[s] | 1;
    Atomics.store(this.#seq, s, q);
    this.#state[s] = 0;
    Atomics.store(this.#seq, s, q + 1);
    Atomics.sub(this.#header, H_ACTIVE, 1);
  }
}

function checkShape(capacity: number, probeWindow: number): void {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 2 ** 30 || (capacity & (capacity - 1)) !== 0) {
    throw new RangeError(`MptcpTokenTable: capacity must be a power of two in 1..2^30, got ${capacity}`);
  }
  if (!Number.isInteger(probeWindow) || probeWindow < 1 || probeWindow > capacity) {
    throw new RangeError(`MptcpTokenTable: probeWindow must be an integer in 1..capacity (${capacity}), got ${probeWindow}`);
  }
}

function initHeader(buffer: ArrayBuffer | SharedArrayBuffer, capacity: number, probeWindow: number, seed: number | undefined): void {
  const h = new Int32Array(buffer, 0, HEADER_WORDS);
  h[H_CAPACITY] = capacity;
  h[H_WINDOW] = probeWindow;
  h[H_SEED] = (seed ?? randomInt(0, 2 ** 32 - 1)) | 0;
  h[H_MAGIC] = TOKEN_TABLE_MAGIC;
}

// Actions of mptcpInspect().
/** No MPTCP option, or one the balancer has no use for: forward normally. */
export const MPTCP_ACTION_NONE = 0;
/** v1 MP_CAPABLE carrying the server's key (info.receiverKeyOffset): learn its SHA-256 token. */
export const MPTCP_ACTION_LEARN_V1 = 1;
/** v0 MP_CAPABLE carrying the server's key: learn its SHA-1 token. */
export const MPTCP_ACTION_LEARN_V0 = 2;
/** MP_JOIN SYN: steer by the token at info.tokenOffset. */
export const MPTCP_ACTION_JOIN_SYN = 3;
/** Malformed TCP options or MPTCP option: count it, forward the packet as plain TCP. */
export const MPTCP_ACTION_MALFORMED = 4;

export const MPTCP_ACTION_NAMES = ['none', 'learn_v1', 'learn_v0', 'join_syn', 'malformed'] as const;

const TCP_RST = 0x04;
const TCP_ACK = 0x10;

/**
 * What the forwarder should do with this client->server TCP packet for MPTCP's sake.
 * Decodes into `info` (reused). Learning needs an ACK without RST: the third ACK (20 bytes)
 * or, if that was lost, the first data segment (22/24 bytes). Pure, no allocation.
 */
export function mptcpInspect(frame: Uint8Array, p: ParsedPacket, info: MptcpInfo): number {
  if (p.protocol !== 6 || p.tcpOptionsLen === 0) {
    info.reset();
    return MPTCP_ACTION_NONE;
  }
  const status = decodeMptcp(frame, p.tcpOptionsOffset, p.tcpOptionsLen, p.tcpFlags, p.payloadLen, info);
  if (status !== MPTCP_OK) {
    return status === MPTCP_ABSENT || status === MPTCP_UNKNOWN_SUBTYPE ? MPTCP_ACTION_NONE : MPTCP_ACTION_MALFORMED;
  }
  const form = info.form;
  if (form === MPTCP_FORM_CAPABLE_ACK || form === MPTCP_FORM_CAPABLE_DATA) {
    if ((p.tcpFlags & (TCP_ACK | TCP_RST)) !== TCP_ACK) return MPTCP_ACTION_NONE;
    return info.version === 0 ? MPTCP_ACTION_LEARN_V0 : MPTCP_ACTION_LEARN_V1;
  }
  if (form === MPTCP_FORM_JOIN_SYN) return MPTCP_ACTION_JOIN_SYN;
  return MPTCP_ACTION_NONE;
}

/**
 * The token an inspected packet is about: for LEARN_* the server key's token (one SHA
 * compression: call it only when the flow has no token yet), for JOIN_SYN the token it
 * carries. -1 for other actions.
 */
export function mptcpActionToken(frame: Uint8Array, action: number, info: MptcpInfo): number {
  if (action === MPTCP_ACTION_LEARN_V1) return mptcpToken(frame, info.receiverKeyOffset, 1);
  if (action === MPTCP_ACTION_LEARN_V0) return mptcpToken(frame, info.receiverKeyOffset, 0);
  if (action === MPTCP_ACTION_JOIN_SYN) return readToken(frame, info.tokenOffset);
  return -1;
}
