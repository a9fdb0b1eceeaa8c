/**
 * The flow state this instance holds as owner or replica: (kind, key) -> backend identity with
 * an expiry time. Bounded (docs/DESIGN.md invariant 6): when full, the entry refreshed longest ago is
 * evicted and counted. Entries expire lazily on lookup and by an incremental sweep.
 *
 * A JS Map keeps insertion order; a refresh deletes and re-inserts, so the first entry is
 * always the least recently written one and eviction is O(1).
 */
import { ENTRY_KIND_CODE, type BackendIdentity, type EntryKind } from './codec.js';

export const DEFAULT_STORE_CAPACITY = 262_144;

export interface StoredEntry {
  readonly kind: EntryKind;
  readonly key: Uint8Array;
  backend: BackendIdentity;
  /** Monotonic ms at which the entry stops being valid. */
  expiresAt: number;
  /** Monotonic ms of the last put. */
  updatedAt: number;
}

export interface OwnerStoreCounters {
  inserts: number;
  updates: number;
  removals: number;
  evictions: number;
  expirations: number;
}

export type PutResult = 'inserted' | 'updated';

/** Map key of (kind, key bytes): one char for the kind, then the bytes as latin1. */
export function storeKey(kind: EntryKind, key: Uint8Array): string {
  return String.fromCharCode(ENTRY_KIND_CODE[kind]) + Buffer.from(key.buffer, key.byteOffset, key.length).toString('latin1');
}

export class OwnerStore {
  readonly capacity: number;
  readonly counters: OwnerStoreCounters = { inserts: 0, updates: 0, removals: 0, evictions: 0, expirations: 0 };
  readonly #entries = new Map<string, StoredEntry>();
  #sweep: IterableIterator<[string, StoredEntry]> | undefined;

  constructor(capacity = DEFAULT_STORE_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`owner store capacity ${capacity}: must be an integer >= 1`);
    this.capacity = capacity;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Insert or refresh; the key bytes are copied. ttlMs must be > 0 (use remove() to withdraw). */
  put(kind: EntryKind, key: Uint8Array, backend: BackendIdentity, ttlMs: number, now: number): PutResult {
    const k = storeKey(kind, key);
    const have = this.#entries.get(k);
    if (have !== undefined) {
      this.#entries.delete(k); // re-insert at the end: most recently written
      have.backend = backend;
      have.expiresAt = now + ttlMs;
      have.updatedAt = now;
      this.#entries.set(k, have);
      this.counters.updates++;
      return 'updated';
    }
    if (this.#entries.size >= this.capacity) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) {
        this.#entries.delete(oldest.value);
        this.counters.evictions++;
      }
    }
    this.#entries.set(k, { kind, key: Uint8Array.from(key), backend, expiresAt: now + ttlMs, updatedAt: now });
    this.counters.inserts++;
    return 'inserted';
  }

  remove(kind: EntryKind, key: Uint8Array): boolean {
    const removed = this.#entries.delete(storeKey(kind, key));
    if (removed) this.counters.removals++;
    return removed;
  }

  /** The live entry for (kind, key), or undefined. An expired entry is removed and counted. */
  lookup(kind: EntryKind, key: Uint8Array, now: number): StoredEntry | undefined {
    const k = storeKey(kind, key);
    const e = this.#entries.get(k);
    if (e === undefined) return undefined;
    if (e.expiresAt <= now) {
      this.#entries.delete(k);
      this.counters.expirations++;
      return undefined;
    }
    return e;
  }

  /**
   * Examine up to `budget` entries, continuing where the previous call stopped, and remove the
   * expired ones. Returns how many were removed. Call from a timer.
   */
  sweep(now: number, budget = 4096): number {
    let removed = 0;
    let seen = 0;
    this.#sweep ??= this.#entries.entries();
    while (seen < budget) {
      const n = this.#sweep.next();
      if (n.done) {
        this.#sweep = undefined;
        break;
      }
      seen++;
      const [k, e] = n.value;
      if (e.expiresAt <= now) {
        this.#entries.delete(k);
        removed++;
      }
    }
    this.counters.expirations += removed;
    return removed;
  }

  /** Every stored entry (expired ones included until swept), oldest write first. Not for hot paths. */
  values(): IterableIterator<StoredEntry> {
    return this.#entries.values();
  }

  clear(): void {
    this.#entries.clear();
    this.#sweep = undefined;
  }
}
