/**
 * Fragments that arrived before their datagram's first fragment (reordering on the path, or a
 * router that sent the last fragment first). They cannot be steered yet: no ports. Each waits in
 * a preallocated slot until the first fragment records the datagram's backend (then the
 * forwarder releases it) or until its deadline (then it is counted and dropped).
 *
 * Bounded: FRAGMENT_HOLD_SLOTS slots of FRAGMENT_HOLD_SLOT_BYTES each (2.5 MiB in all), so at
 * most that many frames and bytes wait; a fragment that finds no free slot, or is larger than a
 * slot, is refused (the caller counts it). Lookups compare a hash first, then the key.
 *
 * No allocation per packet: the forwarder walks matches with nextMatch() instead of a callback.
 */
import { copyBytes } from '../packet/copy-bytes.js';
import { FRAGMENT_KEY_WORDS, sameDatagram } from './fragment-table.js';
import { slotViews } from './slot-views.js';

export const FRAGMENT_HOLD_SLOTS = 256;
export const FRAGMENT_HOLD_SLOT_BYTES = 10240;
/** How long an early fragment waits for its first fragment. */
export const DEFAULT_FRAGMENT_HOLD_MS = 200;

export class FragmentHold {
  readonly holdMs: number;
  readonly #frames = Buffer.alloc(FRAGMENT_HOLD_SLOTS * FRAGMENT_HOLD_SLOT_BYTES);
  readonly #views = slotViews(this.#frames, FRAGMENT_HOLD_SLOTS, FRAGMENT_HOLD_SLOT_BYTES);
  readonly #keys = new Uint32Array(FRAGMENT_HOLD_SLOTS * FRAGMENT_KEY_WORDS);
  readonly #hash = new Uint32Array(FRAGMENT_HOLD_SLOTS);
  readonly #len = new Int32Array(FRAGMENT_HOLD_SLOTS);
  readonly #deadline = new Float64Array(FRAGMENT_HOLD_SLOTS);
  readonly #used = new Uint8Array(FRAGMENT_HOLD_SLOTS);
  #count = 0;
  #cursor = 0;

  constructor(holdMs: number = DEFAULT_FRAGMENT_HOLD_MS) {
    if (!Number.isFinite(holdMs) || holdMs <= 0) throw new RangeError(`fragment hold: ${holdMs} ms must be > 0`);
    this.holdMs = holdMs;
  }

  /** Fragments waiting. */
  get count(): number {
    return this.#count;
  }

  /** Keep `frame[0..len)` of datagram `key` (hash h) until nowMs + holdMs. False: no room (or too large). */
  hold(frame: Uint8Array, len: number, key: Uint32Array, h: number, nowMs: number): boolean {
    if (len > FRAGMENT_HOLD_SLOT_BYTES || this.#count >= FRAGMENT_HOLD_SLOTS) return false;
    for (let i = 0; i < FRAGMENT_HOLD_SLOTS; i++) {
      const s = (this.#cursor + i) % FRAGMENT_HOLD_SLOTS;
      if (this.#used[s] === 1) continue;
      copyBytes(frame, 0, this.#views[s], 0, len);
      this.#keys.set(key, s * FRAGMENT_KEY_WORDS);
      this.#hash[s] = h >>> 0;
      this.#len[s] = len;
      this.#deadline[s] = nowMs + this.holdMs;
      this.#used[s] = 1;
      this.#count++;
      this.#cursor = (s + 1) % FRAGMENT_HOLD_SLOTS;
      return true;
    }
    return false;
  }

  /** The next held slot at or after `from` that belongs to datagram `key` (hash h), or -1. */
  nextMatch(key: Uint32Array, h: number, from: number): number {
    if (this.#count === 0) return -1;
    const hh = h >>> 0;
    for (let s = from; s < FRAGMENT_HOLD_SLOTS; s++) {
      if (this.#used[s] === 1 && this.#hash[s] === hh && sameDatagram(key, this.#keys, s * FRAGMENT_KEY_WORDS)) return s;
    }
    return -1;
  }

  frame(slot: number): Buffer {
    return this.#views[slot];
  }

  length(slot: number): number {
    return this.#len[slot];
  }

  /** Give a slot back (its frame was released or dropped). */
  free(slot: number): void {
    if (this.#used[slot] === 0) return;
    this.#used[slot] = 0;
    this.#count--;
  }

  /** Free every fragment past its deadline; returns how many (the caller counts them as drops). */
  expire(nowMs: number): number {
    if (this.#count === 0) return 0;
    let n = 0;
    for (let s = 0; s < FRAGMENT_HOLD_SLOTS; s++) {
      if (this.#used[s] === 1 && this.#deadline[s] <= nowMs) {
        this.free(s);
        n++;
      }
    }
    return n;
  }
}
