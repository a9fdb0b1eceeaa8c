/**
 * A fragmented datagram's backend as an owned key of the cluster (several instances with owner
 * sync). Routers hash a datagram's later fragments on addresses only (they carry no ports), so
 * they may reach another instance than its first fragment did. The instance that steers the
 * first fragment publishes (datagram key -> backend) to the key's owners; an instance holding
 * later fragments of a datagram it never saw asks the owners, once per datagram, and forwards on
 * the answer (fragment-path.ts). The fragments wait in the bounded fragment hold meanwhile.
 *
 * Wire key (the cluster codec's FRAGMENT kind, src/control/codec-layout.ts):
 *   ipVersion u8 | protocol u8 | identification u32 | source | destination   (14 or 38 bytes)
 * Every fragment of a datagram, first or later, yields the same key.
 *
 * Query slots are preallocated typed arrays; the only allocations are the key copies handed to
 * the control process, once per datagram published or asked, never per packet.
 */
import { FRAGMENT_KEY_WORDS, sameDatagram } from './fragment-table.js';
import type { OwnerQueryFn, PublishNowFn } from './owner-hold.js';
import { OWNER_KIND } from './contract/messages.js';

/** Fragment datagrams asked about at once. */
export const MAX_FRAGMENT_QUERIES = 128;
/**
 * Query ids of fragment queries start here; the flow and token queries of owner-hold.ts stay
 * below 2^30, so the forwarder tells an answer's kind from its id alone.
 */
export const FRAGMENT_QUERY_BASE = 2 ** 32;
const QUERY_SEQ_MASK = 0xfffff;
export const FRAGMENT_OWNER_KEY_MAX = 38;

/** The wire key of datagram `key` (FRAGMENT_KEY_WORDS words, fragment-table.ts layout) at out[0..); returns 14 or 38. */
export function writeFragmentOwnerKey(key: Uint32Array, out: Uint8Array): number {
  const v6 = key[0] >>> 8 === 6;
  const words = v6 ? 4 : 1;
  out[0] = key[0] >>> 8;
  out[1] = key[0] & 0xff;
  writeBE32(out, 2, key[1]);
  for (let w = 0; w < words; w++) {
    writeBE32(out, 6 + 4 * w, key[2 + w]);
    writeBE32(out, 6 + 4 * words + 4 * w, key[6 + w]);
  }
  return 6 + 8 * words;
}

function writeBE32(out: Uint8Array, o: number, v: number): void {
  out[o] = (v >>> 24) & 0xff;
  out[o + 1] = (v >>> 16) & 0xff;
  out[o + 2] = (v >>> 8) & 0xff;
  out[o + 3] = v & 0xff;
}

export class FragmentOwner {
  #ask: OwnerQueryFn | null = null;
  #publish: PublishNowFn | null = null;
  readonly #keys = new Uint32Array(MAX_FRAGMENT_QUERIES * FRAGMENT_KEY_WORDS);
  readonly #hash = new Uint32Array(MAX_FRAGMENT_QUERIES);
  readonly #active = new Uint8Array(MAX_FRAGMENT_QUERIES);
  readonly #seq = new Uint32Array(MAX_FRAGMENT_QUERIES);
  readonly #deadline = new Float64Array(MAX_FRAGMENT_QUERIES);
  readonly #scratch = new Uint8Array(FRAGMENT_OWNER_KEY_MAX);
  #count = 0;
  #cursor = 0;

  /** Owner queries on (fn) or off (null). */
  setAsk(fn: OwnerQueryFn | null): void {
    this.#ask = fn;
  }

  /** Publishing first fragments' datagrams on (fn) or off (null). */
  setPublish(fn: PublishNowFn | null): void {
    this.#publish = fn;
  }

  /** Queries waiting for an answer. */
  get pending(): number {
    return this.#count;
  }

  /** A first fragment was steered to backend `be`: tell the datagram's owners. False when publishing is off. */
  publish(key: Uint32Array, be: number): boolean {
    const fn = this.#publish;
    if (fn === null) return false;
    const n = writeFragmentOwnerKey(key, this.#scratch);
    fn(OWNER_KIND.fragment, this.#scratch.slice(0, n), be);
    return true;
  }

  /**
   * A later fragment of datagram `key` (hash h) with no entry here: ask its owners unless a query
   * for it is already out. Returns 1 (asked now), 0 (already asked) or -1 (queries off or every
   * slot busy).
   */
  ask(key: Uint32Array, h: number, nowMs: number, waitMs: number): number {
    const fn = this.#ask;
    if (fn === null) return -1;
    const hh = h >>> 0;
    if (this.#count > 0) {
      for (let q = 0; q < MAX_FRAGMENT_QUERIES; q++) {
        if (this.#active[q] === 1 && this.#hash[q] === hh && sameDatagram(key, this.#keys, q * FRAGMENT_KEY_WORDS)) return 0;
      }
    }
    if (this.#count >= MAX_FRAGMENT_QUERIES) return -1;
    let q = this.#cursor;
    while (this.#active[q] === 1) q = (q + 1) % MAX_FRAGMENT_QUERIES;
    this.#cursor = (q + 1) % MAX_FRAGMENT_QUERIES;
    this.#active[q] = 1;
    this.#count++;
    this.#keys.set(key, q * FRAGMENT_KEY_WORDS);
    this.#hash[q] = hh;
    this.#deadline[q] = nowMs + waitMs;
    this.#seq[q] = (this.#seq[q] + 1) & QUERY_SEQ_MASK;
    const n = writeFragmentOwnerKey(key, this.#scratch);
    // The control process gets a copy: once per datagram asked about, not per packet.
    fn(FRAGMENT_QUERY_BASE + this.#seq[q] * MAX_FRAGMENT_QUERIES + q, OWNER_KIND.fragment, this.#scratch.slice(0, n), waitMs);
    return 1;
  }

  /**
   * The answer to query `queryId`: its datagram's key is copied to `keyOut` and the slot freed.
   * Returns the datagram's hash, or -1 when the id names no query in flight (late, or unknown).
   */
  settle(queryId: number, keyOut: Uint32Array): number {
    const rel = queryId - FRAGMENT_QUERY_BASE;
    if (!Number.isInteger(rel) || rel < 0) return -1;
    const q = rel % MAX_FRAGMENT_QUERIES;
    if (this.#active[q] === 0 || Math.floor(rel / MAX_FRAGMENT_QUERIES) !== this.#seq[q]) return -1;
    keyOut.set(this.#keys.subarray(q * FRAGMENT_KEY_WORDS, (q + 1) * FRAGMENT_KEY_WORDS));
    this.#active[q] = 0;
    this.#count--;
    return this.#hash[q];
  }

  /** Forget queries past their deadline (their fragments expire from the hold); returns how many. */
  expire(nowMs: number): number {
    if (this.#count === 0) return 0;
    let n = 0;
    for (let q = 0; q < MAX_FRAGMENT_QUERIES; q++) {
      if (this.#active[q] === 1 && this.#deadline[q] <= nowMs) {
        this.#active[q] = 0;
        this.#count--;
        n++;
      }
    }
    return n;
  }
}
