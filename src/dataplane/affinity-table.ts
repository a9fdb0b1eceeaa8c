/**
 * Client affinity: (service, client prefix) -> backend, so every connection from one client
 * prefix reaches one backend while the entry lives. Bounded open addressing in typed arrays: a
 * key probes a window of slots; a full window evicts its least recently used entry (counted).
 * Hot path: no allocation.
 *
 * Shared by data-plane workers: another connection of the same client may hash to another
 * worker, so the whole table (header with the writer lock, live count and sweep cursor; slot
 * arrays with a sequence number per slot) lives in one buffer, private (ArrayBuffer) or made by
 * AffinityTable.sharedBuffer() and opened with AffinityTable.over() in every worker thread.
 * Writers (set, expiry, sweep, clear) serialize on the lock word; set runs once per new
 * connection of an affinity service. Readers take no lock: a per-slot seqlock (odd while a
 * writer changes the slot; re-checked after reading) keeps them from mixing two entries
 * (docs/DESIGN.md "Tables shared by workers"). The probe start is the caller's hash, so workers
 * agree on it as long as they share the generation's hash seed.
 */
import { TableLock, repairMidWrite } from './table-lock.js';
const WORDS = 5; // service id, 4 address words (IPv4 uses the first)
const WINDOW = 8;

// Header: Int32 words at the start of the buffer.
const H_MAGIC = 0;
const H_CAPACITY = 1;
/** 0 free, else the writerId of the table holding it. */
const H_LOCK = 2;
/** Live entries, changed under the lock only. */
const H_SIZE = 3;
/** Next slot to sweep; claimed a slice at a time with Atomics.add, so workers sweep different slices. */
const H_SWEEP = 4;
const HEADER_WORDS = 16;
const HEADER_BYTES = HEADER_WORDS * 4;
const AFFINITY_MAGIC = 0x534c4166; // "SLAf"
/** lastSeen (f64) + seq, 5 key words, backend, used (i32 each). */
const SLOT_BYTES = 8 + (2 + WORDS + 1) * 4;
const MIN_CAPACITY = 1024;

/** A slot that stays mid-write this many reads is treated as not matching (a writer that died there must not stall forwarding). */
const READ_RETRIES = 64;

export interface AffinityTableSharing {
  /** A buffer made by AffinityTable.sharedBuffer(): the table lives there, shared with every other table over it. */
  buffer?: SharedArrayBuffer;
  /** TEST ONLY: skip the writer lock and the per-slot seqlock (private lock word and sequence numbers per instance). */
  unsafeUnlocked?: boolean;
  /**
   * This writer's mark in the lock word while it holds it (an integer 1..2^31-1, default 1): give
   * each worker its own (its index + 1), so that after a worker thread exits the thread that
   * started it can call AffinityTable.releaseLockOf(buffer, writerId).
   */
  writerId?: number;
}

/** The table's slot count for a requested capacity: a power of two, at least 1024. */
function slotsFor(capacity: number): number {
  let c = MIN_CAPACITY;
  while (c < capacity) c <<= 1;
  return c;
}

export class AffinityTable {
  readonly capacity: number;
  /** The table's storage: hand it to AffinityTable.over() in another thread to share the table (when it is a SharedArrayBuffer). */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly #mask: number;
  readonly #header: Int32Array;
  /** The writer lock: H_LOCK of the header, or a private word in unsafeUnlocked mode. */
  readonly #writer: TableLock;
  readonly #seq: Int32Array;
  readonly #keys: Uint32Array;
  readonly #backend: Int32Array;
  readonly #lastSeen: Float64Array;
  readonly #used: Int32Array;
  // Per instance (per worker).
  #evictions = 0;
  #expirations = 0;
  // Scratch of #readMatch: the matching entry's fields, read under its seqlock.
  #readBackend = 0;
  #readSeen = 0;

  /** Bytes of a table buffer for a requested capacity (rounded up like the constructor does). */
  static bytesFor(capacity: number): number {
    return HEADER_BYTES + slotsFor(capacity) * SLOT_BYTES;
  }

  /** A SharedArrayBuffer holding an empty table, for AffinityTable.over() in each worker. */
  static sharedBuffer(capacity: number): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer(AffinityTable.bytesFor(capacity));
    initHeader(buffer, slotsFor(capacity));
    return buffer;
  }

  /** A table over a buffer from sharedBuffer(): same entries as every other table over it. */
  static over(buffer: SharedArrayBuffer, options: Omit<AffinityTableSharing, 'buffer'> = {}): AffinityTable {
    if (buffer.byteLength < HEADER_BYTES) throw new RangeError(`AffinityTable: buffer of ${buffer.byteLength} bytes is not an affinity table`);
    return new AffinityTable(new Int32Array(buffer, 0, HEADER_WORDS)[H_CAPACITY], { buffer, unsafeUnlocked: options.unsafeUnlocked, writerId: options.writerId });
  }

  /**
   * After a worker thread exited (crashed or terminated): if it died holding the writer lock,
   * repair what it may have left half done and free the lock. A slot it was writing (odd
   * sequence) is emptied and the live count recounted, under the lock. Call it from the thread
   * that started the workers, once the worker's 'exit' was seen; true if the lock was its.
   * O(capacity), once per such exit.
   */
  static releaseLockOf(buffer: SharedArrayBuffer, writerId: number): boolean {
    const t = AffinityTable.over(buffer, { writerId });
    const h = new Int32Array(buffer, 0, HEADER_WORDS);
    if (!TableLock.heldBy(h, H_LOCK, writerId)) return false;
    t.#repairHeld();
    return TableLock.release(h, H_LOCK, writerId);
  }

  /** The lock is held (by a dead writer, now ours): empty slots left mid-write, recount live entries. */
  #repairHeld(): void {
    Atomics.store(this.#header, H_SIZE, repairMidWrite(this.#seq, this.#used, this.capacity));
  }

  constructor(capacity: number, options: AffinityTableSharing = {}) {
    let buffer: ArrayBuffer | SharedArrayBuffer;
    if (options.buffer === undefined) {
      buffer = new ArrayBuffer(AffinityTable.bytesFor(capacity));
      initHeader(buffer, slotsFor(capacity));
    } else {
      buffer = options.buffer;
      const h = new Int32Array(buffer, 0, HEADER_WORDS);
      if (h[H_MAGIC] !== AFFINITY_MAGIC) throw new RangeError('AffinityTable: the buffer was not made by AffinityTable.sharedBuffer()');
      if (slotsFor(capacity) !== h[H_CAPACITY]) throw new RangeError(`AffinityTable: capacity ${capacity} differs from the buffer's ${h[H_CAPACITY]}`);
      if (buffer.byteLength < HEADER_BYTES + h[H_CAPACITY] * SLOT_BYTES) throw new RangeError('AffinityTable: buffer shorter than its capacity needs');
    }
    this.buffer = buffer;
    this.#header = new Int32Array(buffer, 0, HEADER_WORDS);
    const c = this.#header[H_CAPACITY];
    this.capacity = c;
    this.#mask = c - 1;
    // Float64 first: the 64-byte header keeps it 8-byte aligned.
    let off = HEADER_BYTES;
    this.#lastSeen = new Float64Array(buffer, off, c);
    off += c * 8;
    this.#seq = new Int32Array(buffer, off, c);
    off += c * 4;
    this.#keys = new Uint32Array(buffer, off, c * WORDS);
    off += c * WORDS * 4;
    this.#backend = new Int32Array(buffer, off, c);
    off += c * 4;
    this.#used = new Int32Array(buffer, off, c);
    const unsafe = options.unsafeUnlocked === true;
    if (unsafe) this.#seq = new Int32Array(c);
    this.#writer = new TableLock(unsafe ? new Int32Array(HEADER_WORDS) : this.#header, H_LOCK, options.writerId ?? 1, 'AffinityTable');
  }

  /** Live entries of the whole table (shared: of every worker; do not sum it over workers). */
  get size(): number {
    return Atomics.load(this.#header, H_SIZE);
  }
  get evictions(): number {
    return this.#evictions;
  }
  get expirations(): number {
    return this.#expirations;
  }
  /** Writes given up because another writer held the lock of a shared table past the bound. */
  get lockTimeouts(): number {
    return this.#writer.timeouts;
  }

  /** Does `slot` hold (sid, key)? Plain reads: settled under the lock, a first guess without it (#readEntry settles it). */
  #matches(slot: number, sid: number, key: Uint32Array): boolean {
    const k = slot * WORDS;
    const keys = this.#keys;
    return keys[k] === sid && keys[k + 1] === key[0] && keys[k + 2] === key[1] && keys[k + 3] === key[2] && keys[k + 4] === key[3];
  }

  /**
   * Reads the entry in `slot` into #readBackend/#readSeen under its seqlock; true if it is
   * whole and holds (sid, key). Called only for a slot whose plain-read key matched (a miss
   * costs no atomics). Atomics.load of the sequence around plain loads of the fields: see
   * MptcpTokenTable's #readEntry for why only the sequence reads are atomic.
   */
  #readEntry(slot: number, sid: number, key: Uint32Array): boolean {
    const seq = this.#seq;
    for (let tries = 0; tries < READ_RETRIES; tries++) {
      const before = Atomics.load(seq, slot);
      if ((before & 1) !== 0) continue;
      const hit = this.#used[slot] === 1 && this.#matches(slot, sid, key);
      const backend = this.#backend[slot];
      const seen = this.#lastSeen[slot];
      if (Atomics.load(seq, slot) !== before) continue;
      this.#readBackend = backend;
      this.#readSeen = seen;
      return hit;
    }
    return false;
  }

  /**
   * The backend of record for (sid, key) if its entry is younger than timeoutMs, else -1.
   * The refresh of last-seen is a plain store: a refresh lost to a racing writer only makes the
   * entry a little older than it could be (the client's next connection refreshes it again),
   * and one landing on a slot another worker just reused sets a fresh time on a fresh entry.
   */
  lookup(sid: number, key: Uint32Array, hash: number, nowMs: number, timeoutMs: number): number {
    for (let i = 0; i < WINDOW; i++) {
      const slot = (hash + i) & this.#mask;
      if (this.#used[slot] !== 1 || !this.#matches(slot, sid, key) || !this.#readEntry(slot, sid, key)) continue;
      if (nowMs - this.#readSeen >= timeoutMs) {
        this.#expireIfStill(slot, sid, key, nowMs, timeoutMs);
        return -1;
      }
      this.#lastSeen[slot] = nowMs;
      return this.#readBackend;
    }
    return -1;
  }

  /** Like lookup, changing nothing: the entry is neither refreshed nor expired. */
  peek(sid: number, key: Uint32Array, hash: number, nowMs: number, timeoutMs: number): number {
    for (let i = 0; i < WINDOW; i++) {
      const slot = (hash + i) & this.#mask;
      if (this.#used[slot] === 1 && this.#matches(slot, sid, key) && this.#readEntry(slot, sid, key)) return nowMs - this.#readSeen >= timeoutMs ? -1 : this.#readBackend;
    }
    return -1;
  }

  /**
   * Record (sid, key) -> backend: its own slot if present, else the first free one, else evict
   * the least recently used. Under the writer lock, so two workers setting one key end with one
   * entry (the later one's backend); skipped and counted in lockTimeouts if the lock stays held.
   */
  set(sid: number, key: Uint32Array, hash: number, backend: number, nowMs: number): void {
    if (!this.#writer.lock()) return;
    let victim = -1;
    let free = -1;
    let lru = -1;
    let lruSeen = Infinity;
    for (let i = 0; i < WINDOW; i++) {
      const slot = (hash + i) & this.#mask;
      if (this.#used[slot] === 0) {
        if (free < 0) free = slot;
      } else if (this.#matches(slot, sid, key)) {
        victim = slot;
        break;
      } else if (this.#lastSeen[slot] < lruSeen) {
        lruSeen = this.#lastSeen[slot];
        lru = slot;
      }
    }
    if (victim < 0) {
      if (free >= 0) {
        victim = free;
        Atomics.add(this.#header, H_SIZE, 1);
      } else {
        victim = lru;
        this.#evictions++;
      }
    }
    const k = victim * WORDS;
    const keys = this.#keys;
    const q = this.#seq[victim] | 1;
    Atomics.store(this.#seq, victim, q); // odd: readers of this slot retry until the entry is whole
    keys[k] = sid;
    keys[k + 1] = key[0];
    keys[k + 2] = key[1];
    keys[k + 3] = key[2];
    keys[k + 4] = key[3];
    this.#backend[victim] = backend;
    this.#lastSeen[victim] = nowMs;
    this.#used[victim] = 1;
    Atomics.store(this.#seq, victim, q + 1); // even: whole
    this.#writer.unlock();
  }

  /**
   * Timer work: drop entries idle for longer than their service's timeout, a bounded slice at a
   * time (the slice is claimed from the shared cursor). Read without the lock, removed under it.
   */
  sweep(nowMs: number, maxSlots: number, timeoutOf: (sid: number) => number): number {
    const n = maxSlots < this.capacity ? maxSlots : this.capacity;
    let slot = Atomics.add(this.#header, H_SWEEP, n) & this.#mask;
    let expired = 0;
    for (let i = 0; i < n; i++) {
      if (this.#used[slot] === 1 && nowMs - this.#lastSeen[slot] >= timeoutOf(this.#keys[slot * WORDS]) && this.#writer.lock()) {
        if (this.#used[slot] === 1 && nowMs - this.#lastSeen[slot] >= timeoutOf(this.#keys[slot * WORDS])) {
          this.#clear(slot);
          expired++;
        }
        this.#writer.unlock();
      }
      slot = (slot + 1) & this.#mask;
    }
    this.#expirations += expired;
    return expired;
  }

  /** Empties the table (for every table over the buffer). */
  clear(): void {
    if (!this.#writer.lock()) return;
    for (let s = 0; s < this.capacity; s++) if (this.#used[s] !== 0) this.#clear(s);
    this.#writer.unlock();
  }

  /** A reader found (sid, key) stale in `slot`: remove it if the lock is free right now (else the sweep will); never waits. */
  #expireIfStill(slot: number, sid: number, key: Uint32Array, nowMs: number, timeoutMs: number): void {
    if (!this.#writer.tryLock()) return;
    if (this.#used[slot] === 1 && this.#matches(slot, sid, key) && nowMs - this.#lastSeen[slot] >= timeoutMs) {
      this.#clear(slot);
      this.#expirations++;
    }
    this.#writer.unlock();
  }


  /** Empties `slot`; the caller holds the lock. */
  #clear(slot: number): void {
    const q = this.#seq[slot] | 1;
    Atomics.store(this.#seq, slot, q);
    this.#used[slot] = 0;
    Atomics.store(this.#seq, slot, q + 1);
    Atomics.sub(this.#header, H_SIZE, 1);
  }
}

function initHeader(buffer: ArrayBuffer | SharedArrayBuffer, slots: number): void {
  const h = new Int32Array(buffer, 0, HEADER_WORDS);
  h[H_CAPACITY] = slots;
  h[H_MAGIC] = AFFINITY_MAGIC;
}

/**
 * Write the client's source address masked to `prefix` bits into `out` (4 words, zero-filled).
 * Returns the number of address bytes (4 or 16). No allocation.
 */
export function maskedSource(frame: Uint8Array, off: number, addrLen: number, prefix: number, out: Uint32Array): number {
  for (let w = 0; w < 4; w++) {
    if (w * 4 >= addrLen) {
      out[w] = 0;
      continue;
    }
    const o = off + w * 4;
    const word = ((frame[o] << 24) | (frame[o + 1] << 16) | (frame[o + 2] << 8) | frame[o + 3]) >>> 0;
    const bits = prefix - w * 32;
    out[w] = bits >= 32 ? word : bits <= 0 ? 0 : (word & (0xffffffff << (32 - bits))) >>> 0;
  }
  return addrLen;
}
