/**
 * Client affinity: (service, client prefix) -> backend, so every connection from one client
 * prefix reaches one backend while the entry lives. Bounded open addressing in typed arrays: a
 * key probes a window of slots; a full window evicts its least recently used entry (counted).
 * Hot path: no allocation.
 */
const WORDS = 5; // service id, 4 address words (IPv4 uses the first)
const WINDOW = 8;

export class AffinityTable {
  readonly capacity: number;
  readonly #mask: number;
  readonly #keys: Uint32Array;
  readonly #backend: Int32Array;
  readonly #lastSeen: Float64Array;
  readonly #used: Uint8Array;
  #size = 0;
  #evictions = 0;
  #expirations = 0;
  #cursor = 0;

  constructor(capacity: number) {
    let c = 1024;
    while (c < capacity) c <<= 1;
    this.capacity = c;
    this.#mask = c - 1;
    this.#keys = new Uint32Array(c * WORDS);
    this.#backend = new Int32Array(c);
    this.#lastSeen = new Float64Array(c);
    this.#used = new Uint8Array(c);
  }

  get size(): number {
    return this.#size;
  }
  get evictions(): number {
    return this.#evictions;
  }
  get expirations(): number {
    return this.#expirations;
  }

  #matches(slot: number, sid: number, key: Uint32Array): boolean {
    const k = slot * WORDS;
    const keys = this.#keys;
    return keys[k] === sid && keys[k + 1] === key[0] && keys[k + 2] === key[1] && keys[k + 3] === key[2] && keys[k + 4] === key[3];
  }

  /** The backend of record for (sid, key) if its entry is younger than timeoutMs, else -1. */
  lookup(sid: number, key: Uint32Array, hash: number, nowMs: number, timeoutMs: number): number {
    for (let i = 0; i < WINDOW; i++) {
      const slot = (hash + i) & this.#mask;
      if (this.#used[slot] === 1 && this.#matches(slot, sid, key)) {
        if (nowMs - this.#lastSeen[slot] >= timeoutMs) {
          this.#used[slot] = 0;
          this.#size--;
          this.#expirations++;
          return -1;
        }
        this.#lastSeen[slot] = nowMs;
        return this.#backend[slot];
      }
    }
    return -1;
  }

  /** Like lookup, changing nothing: the entry is neither refreshed nor expired. */
  peek(sid: number, key: Uint32Array, hash: number, nowMs: number, timeoutMs: number): number {
    for (let i = 0; i < WINDOW; i++) {
      const slot = (hash + i) & this.#mask;
      if (this.#used[slot] === 1 && this.#matches(slot, sid, key)) return nowMs - this.#lastSeen[slot] >= timeoutMs ? -1 : this.#backend[slot];
    }
    return -1;
  }

  /** Record (sid, key) -> backend: its own slot if present, else the first free one, else evict the least recently used. */
  set(sid: number, key: Uint32Array, hash: number, backend: number, nowMs: number): void {
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
        this.#size++;
      } else {
        victim = lru;
        this.#evictions++;
      }
    }
    const k = victim * WORDS;
    this.#keys[k] = sid;
    this.#keys[k + 1] = key[0];
    this.#keys[k + 2] = key[1];
    this.#keys[k + 3] = key[2];
    this.#keys[k + 4] = key[3];
    this.#backend[victim] = backend;
    this.#lastSeen[victim] = nowMs;
    this.#used[victim] = 1;
  }

  /** Timer work: drop entries idle for longer than their service's timeout, a bounded slice at a time. */
  sweep(nowMs: number, maxSlots: number, timeoutOf: (sid: number) => number): number {
    let expired = 0;
    for (let i = 0; i < maxSlots && i < this.capacity; i++) {
      const slot = this.#cursor;
      this.#cursor = (this.#cursor + 1) & this.#mask;
      if (this.#used[slot] === 1 && nowMs - this.#lastSeen[slot] >= timeoutOf(this.#keys[slot * WORDS])) {
        this.#used[slot] = 0;
        this.#size--;
        expired++;
      }
    }
    this.#expirations += expired;
    return expired;
  }

  clear(): void {
    this.#used.fill(0);
    this.#size = 0;
  }
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
