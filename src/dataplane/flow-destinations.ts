/**
 * The flow table's destination addresses, stored once each. Every tracked flow goes to a VIP, so
 * a table of a million flows holds a handful of distinct destinations: a slot keeps a 16-bit index
 * here instead of 16 address bytes (an IPv6 key would otherwise not fit the memory goal).
 *
 * Open addressing with linear probing over views in the table's buffer. An entry whose last flow
 * left keeps its address and family (so probe chains never break) and is reused by the next new
 * address that probes past it. Reference counts say how many live slots point at an entry.
 * Work per insert is bounded by the entry count; lookups never come here (they compare the
 * packet's destination with the entry a slot points at).
 */
import type { FlowViews } from './flow-layout.js';

// Words and hashes are signed (int32) between functions: an unsigned value of 2^31 or more is
// no small integer on x64 Node and would be boxed, a heap allocation per new flow, wherever it
// crosses a call V8 did not inline. Uint32Array stores take them as they are.
function readBE32(b: Uint8Array, i: number): number {
  return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3];
}

/** murmur3's finalizer (signed result, same bits). */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

export class FlowDestinations {
  /** Entries usable by flows (a power of two); entry `count` is the discard slot's scratch. */
  readonly count: number;
  readonly #mask: number;
  readonly #addr: Uint32Array;
  readonly #refs: Uint32Array;
  readonly #family: Uint8Array;

  constructor(v: FlowViews, count: number) {
    this.count = count;
    this.#mask = count - 1;
    this.#addr = v.destAddr;
    this.#refs = v.destRefs;
    this.#family = v.destFamily;
  }

  /** Index of the address at frame[off..) (4 or 16 bytes), added if new, with one more reference; -1 when full. */
  acquire(frame: Uint8Array, off: number, v6: boolean): number {
    const w0 = readBE32(frame, off);
    const w1 = v6 ? readBE32(frame, off + 4) : 0;
    const w2 = v6 ? readBE32(frame, off + 8) : 0;
    const w3 = v6 ? readBE32(frame, off + 12) : 0;
    const fam = v6 ? 6 : 4;
    const family = this.#family;
    const addr = this.#addr;
    let i = fmix(w0 ^ fmix(w1 ^ fmix(w2 ^ fmix(w3 ^ fam)))) & this.#mask;
    let reuse = -1;
    let end = -1;
    for (let n = 0; n < this.count; n++, i = (i + 1) & this.#mask) {
      const f = family[i];
      if (f === 0) {
        end = i;
        break;
      }
      const a = i * 4;
      if (f === fam && (addr[a] | 0) === w0 && (addr[a + 1] | 0) === w1 && (addr[a + 2] | 0) === w2 && (addr[a + 3] | 0) === w3) {
        this.#refs[i]++;
        return i;
      }
      if (reuse < 0 && this.#refs[i] === 0) reuse = i;
    }
    const target = reuse >= 0 ? reuse : end;
    if (target < 0) return -1;
    this.#write(target, fam, w0, w1, w2, w3);
    this.#refs[target] = 1;
    return target;
  }

  /** Copy the address into the scratch entry (no reference): for a flow that is not tracked. */
  scratch(frame: Uint8Array, off: number, v6: boolean): number {
    const s = this.count;
    this.#write(s, v6 ? 6 : 4, readBE32(frame, off), v6 ? readBE32(frame, off + 4) : 0, v6 ? readBE32(frame, off + 8) : 0, v6 ? readBE32(frame, off + 12) : 0);
    return s;
  }

  release(i: number): void {
    if (i < this.count && this.#refs[i] > 0) this.#refs[i]--;
  }

  /** Live references of entry i (tests and diagnostics). */
  refsOf(i: number): number {
    return this.#refs[i];
  }

  clear(): void {
    this.#family.fill(0);
    this.#refs.fill(0);
    this.#addr.fill(0);
  }

  #write(i: number, fam: number, w0: number, w1: number, w2: number, w3: number): void {
    const a = i * 4;
    this.#family[i] = fam;
    this.#addr[a] = w0;
    this.#addr[a + 1] = w1;
    this.#addr[a + 2] = w2;
    this.#addr[a + 3] = w3;
  }
}
