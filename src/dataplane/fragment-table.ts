/**
 * Fragmented datagrams: (family, src, dst, protocol, identification) -> the backend its first
 * fragment was steered to. Only the first fragment carries the ports, so it decides by the full
 * 5-tuple like any packet of its flow; the datagram's later fragments carry only addresses and
 * the identification, look their datagram up here and follow it.
 *
 * Bounded in entries and in time: a fixed table of preallocated typed arrays, open addressing
 * with a probe window of FRAGMENT_PROBE_WINDOW slots. An entry lives `timeoutMs` after its last
 * use (first fragment or a later one that matched); an expired entry is free for reuse on the
 * spot. When every slot of a window holds a live datagram the insert fails (the caller counts
 * the overflow): evicting a live datagram would only break it instead of the new one.
 *
 * Key per slot, 10 words: [0] ipVersion << 8 | protocol, [1] identification (16 bits in IPv4,
 * 32 in IPv6), [2..5] source address words, [6..9] destination address words (IPv4 uses [2], [6]).
 *
 * Per-packet methods allocate nothing and never throw.
 */
import { fmix32 } from '../hash/murmur3.js';
import type { ParsedPacket } from '../packet/parsed-packet.js';

export const FRAGMENT_KEY_WORDS = 10;
/** Slots examined per lookup or insert. */
export const FRAGMENT_PROBE_WINDOW = 8;
/** Largest table: 2^20 datagrams in flight. */
export const FRAGMENT_MAX_CAPACITY = 1 << 20;
export const DEFAULT_FRAGMENT_CAPACITY = 65536;
/** How long a datagram's backend is remembered after its last fragment (Linux keeps a partial datagram 30 s; its fragments come within milliseconds). */
export const DEFAULT_FRAGMENT_TIMEOUT_MS = 2000;

function readBE32(b: Uint8Array, i: number): number {
  return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
}

/**
 * Writes the datagram key of the fragment `p` (parsed from `frame`) into `out` and returns its
 * hash. Used for every fragment, first or later, so both find the same slot.
 */
export function datagramKey(frame: Uint8Array, p: ParsedPacket, out: Uint32Array): number {
  out.fill(0);
  out[0] = (p.ipVersion << 8) | p.protocol;
  out[1] = p.fragId >>> 0;
  const words = p.addrLen >>> 2;
  for (let w = 0; w < words; w++) {
    out[2 + w] = readBE32(frame, p.srcAddrOffset + 4 * w);
    out[6 + w] = readBE32(frame, p.dstAddrOffset + 4 * w);
  }
  let h = 0x9747b28c;
  for (let i = 0; i < FRAGMENT_KEY_WORDS; i++) h = fmix32(h ^ out[i]);
  return h >>> 0;
}

/** Equal datagram keys (both FRAGMENT_KEY_WORDS long, `b` at word offset `bOff`). */
export function sameDatagram(a: Uint32Array, b: Uint32Array, bOff: number): boolean {
  for (let i = 0; i < FRAGMENT_KEY_WORDS; i++) if (a[i] !== b[bOff + i]) return false;
  return true;
}

export class FragmentTable {
  readonly capacity: number;
  readonly timeoutMs: number;
  readonly #mask: number;
  readonly #window: number;
  readonly #keys: Uint32Array;
  readonly #backend: Int32Array;
  readonly #service: Int16Array;
  /** The first fragment's flow hash (ipip's IPv6 flow label for the whole datagram). */
  readonly #flowHash: Uint32Array;
  readonly #expires: Float64Array;
  readonly #used: Uint8Array;
  #size = 0;
  #cursor = 0;

  /** Config-time: throws a RangeError on a bad capacity or timeout. */
  constructor(capacity: number, timeoutMs: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > FRAGMENT_MAX_CAPACITY) {
      throw new RangeError(`fragment table: capacity ${capacity} must be an integer in 1..${FRAGMENT_MAX_CAPACITY}`);
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`fragment table: timeout ${timeoutMs} ms must be > 0`);
    let c = 1;
    while (c < capacity) c *= 2;
    this.capacity = c;
    this.timeoutMs = timeoutMs;
    this.#mask = c - 1;
    this.#window = Math.min(FRAGMENT_PROBE_WINDOW, c);
    this.#keys = new Uint32Array(c * FRAGMENT_KEY_WORDS);
    this.#backend = new Int32Array(c);
    this.#service = new Int16Array(c);
    this.#flowHash = new Uint32Array(c);
    this.#expires = new Float64Array(c);
    this.#used = new Uint8Array(c);
  }

  /** Live datagrams (an upper bound: expired entries are freed lazily and by sweep()). */
  get size(): number {
    return this.#size;
  }

  /** The live slot of datagram `key` (hash `h`), refreshed; -1 if none. */
  lookup(key: Uint32Array, h: number, nowMs: number): number {
    for (let i = 0; i < this.#window; i++) {
      const s = (h + i) & this.#mask;
      if (this.#used[s] === 0 || !sameDatagram(key, this.#keys, s * FRAGMENT_KEY_WORDS)) continue;
      if (this.#expires[s] <= nowMs) {
        this.#free(s);
        return -1;
      }
      this.#expires[s] = nowMs + this.timeoutMs;
      return s;
    }
    return -1;
  }

  /**
   * Record datagram `key` -> (backend, service, flow hash); an existing entry of the same datagram
   * is overwritten. Returns the slot, or -1 when its window holds only live datagrams (overflow).
   */
  insert(key: Uint32Array, h: number, nowMs: number, backend: number, service: number, flowHash: number): number {
    let free = -1;
    for (let i = 0; i < this.#window; i++) {
      const s = (h + i) & this.#mask;
      if (this.#used[s] === 0) {
        if (free < 0) free = s;
        continue;
      }
      if (sameDatagram(key, this.#keys, s * FRAGMENT_KEY_WORDS)) {
        free = s;
        break;
      }
      if (this.#expires[s] <= nowMs) {
        this.#free(s);
        if (free < 0) free = s;
      }
    }
    if (free < 0) return -1;
    if (this.#used[free] === 0) {
      this.#used[free] = 1;
      this.#size++;
    }
    this.#keys.set(key, free * FRAGMENT_KEY_WORDS);
    this.#backend[free] = backend;
    this.#service[free] = service;
    this.#flowHash[free] = flowHash >>> 0;
    this.#expires[free] = nowMs + this.timeoutMs;
    return free;
  }

  backendOf(slot: number): number {
    return this.#backend[slot];
  }

  serviceOf(slot: number): number {
    return this.#service[slot];
  }

  flowHashOf(slot: number): number {
    return this.#flowHash[slot];
  }

  /** Timer work: free up to `slots` expired entries from a rotating cursor; returns how many. */
  sweep(nowMs: number, slots: number): number {
    let freed = 0;
    const n = Math.min(slots, this.capacity);
    for (let i = 0; i < n; i++) {
      const s = this.#cursor;
      this.#cursor = (s + 1) & this.#mask;
      if (this.#used[s] === 1 && this.#expires[s] <= nowMs) {
        this.#free(s);
        freed++;
      }
    }
    return freed;
  }

  /** Forget every datagram (a generation that removed their backends). */
  clear(): void {
    this.#used.fill(0);
    this.#size = 0;
  }

  #free(s: number): void {
    this.#used[s] = 0;
    this.#size--;
  }
}
