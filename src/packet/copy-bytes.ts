/**
 * Copying bytes between frames without allocating. Node 20's Buffer.copy (and set(subarray))
 * makes a new Uint8Array view of the source whenever the copy starts past its first byte or
 * ends before its last: an object per forwarded frame. copyBytes copies the same bytes with
 * views made once and kept (native-bench/copy-bytes.bench.ts measured the choices):
 *   - a few bytes: a byte loop;
 *   - source and target in one backing ArrayBuffer: copyWithin over the whole backing (memmove);
 *   - otherwise TypedArray.set (memmove) from a kept view of the source that starts at the
 *     copy's first byte and is n rounded up to a power of two long: bytes past the n asked for
 *     land in the target past the copy, where nothing has been written yet (callers copy the
 *     packet's tail last). The views are few: one per slot start, header offset and size class.
 *   - where such a view would not fit (the end of a backing or of the target), or too many were
 *     made: 32-bit words (same alignment) or bytes, slower but allocation-free too.
 *   - the whole source (from its first byte to its last): TypedArray.set of the source itself,
 *     no view needed (what Buffer.copy does then too);
 *   - a source backing seen once (not the last one that missed): not kept yet. Copies from many
 *     backings in turn (frames each in their own ArrayBuffer, as Buffer.alloc makes them) would
 *     otherwise replace a kept backing, and make its views anew, on every copy: that halved
 *     forward() in native-bench/plain-path.bench.ts. Such a copy is a set() from a subarray (one
 *     view, what Buffer.copy costs). The packet path copies from a few backings (rx slots, a
 *     capture ring, hold slots), each kept on its second copy.
 * Reading a typed array's .buffer is a runtime call (about 35 ns here, more than a 60-byte
 * memmove): the target's backing is remembered with the target, which is nearly always the same
 * tx slot array.
 */

/** At or below this many bytes: a byte loop (no builtin call; not measured apart, it is 16 loads and stores at most). */
export const SHORT_COPY_BYTES = 16;
/** Backings whose views are kept; the packet path touches two or three (rx slots, tx slots, a capture ring). */
const KEPT_BACKINGS = 4;
/** Size classes: 64 bytes (2^6) up to 2^16. */
const MIN_CLASS_SHIFT = 6;
const MAX_CLASS_SHIFT = 16;
/** Copies from further into a backing than this use the loops (keeps keys small integers). */
const MAX_VIEW_START = 1 << 24;
/**
 * Views kept per backing at most (each about 100-200 bytes of heap); beyond, the loops. A batch
 * of 256 rx slots with a few header offsets and size classes needs ~3000; the capture ring read
 * in place (engine-ring.ts) is the source of most copies, one start per ring frame: 8192 frames
 * at 16 MiB (16384 at the default 32 MiB; past the limit, the loops), times the size classes the traffic has. 32768 views are 3-6 MiB at
 * most, made only as traffic reaches them; past that, 1500-byte frames take the word loop
 * (about 4x a memmove, native-bench/copy-bytes.bench.ts).
 */
const MAX_VIEWS_PER_BACKING = 32768;

interface KeptBacking {
  backing: ArrayBufferLike | null;
  bytes: Uint8Array;
  words: Int32Array;
  /** (start << 5 | size class shift) -> view of the backing from start, 2^shift long. */
  views: Map<number, Uint8Array>;
}

const kept: KeptBacking[] = [];
for (let i = 0; i < KEPT_BACKINGS; i++) kept.push({ backing: null, bytes: new Uint8Array(0), words: new Int32Array(0), views: new Map() });
let nextVictim = 0;
/** The last source backing that was not kept: a second copy from it in a row keeps it. */
let lastMiss: ArrayBufferLike | null = null;
/** The last target and its backing (see .buffer above). */
let lastDst: Uint8Array | null = null;
let lastDstBacking: ArrayBufferLike | null = null;

/** The kept views of `backing` if it is kept, or if it missed last time too (then made, once: the oldest entry gives way); else null. */
function keptIfWarm(backing: ArrayBufferLike): KeptBacking | null {
  for (let i = 0; i < KEPT_BACKINGS; i++) if (kept[i].backing === backing) return kept[i];
  if (lastMiss !== backing) {
    lastMiss = backing;
    return null;
  }
  lastMiss = null;
  return keptOf(backing);
}

/** The kept views of `backing`, made (once) if it is new; the oldest entry gives way. */
function keptOf(backing: ArrayBufferLike): KeptBacking {
  for (let i = 0; i < KEPT_BACKINGS; i++) if (kept[i].backing === backing) return kept[i];
  const k = kept[nextVictim];
  nextVictim = (nextVictim + 1) % KEPT_BACKINGS;
  k.backing = backing;
  k.bytes = new Uint8Array(backing, 0, backing.byteLength);
  k.words = new Int32Array(backing, 0, backing.byteLength >>> 2);
  k.views = new Map();
  return k;
}

/**
 * Copies src[srcStart, srcStart + n) to dst[dstStart, dstStart + n), cut short (as Buffer.copy
 * is) where either array ends; returns the bytes copied. dst bytes from dstStart + n up to the
 * next power of two of n may be overwritten too (with src bytes past the copy), never past
 * dst's end: copy a frame's tail before writing anything after it.
 */
export function copyBytes(src: Uint8Array, srcStart: number, dst: Uint8Array, dstStart: number, n: number): number {
  if (n > src.length - srcStart) n = src.length - srcStart;
  if (n > dst.length - dstStart) n = dst.length - dstStart;
  if (n <= 0) return 0;
  if (n <= SHORT_COPY_BYTES) {
    copyByteLoop(src, srcStart, dst, dstStart, n);
    return n;
  }
  if (srcStart === 0 && n === src.length) {
    dst.set(src, dstStart);
    return n;
  }
  const sb = src.buffer;
  const from = src.byteOffset + srcStart;
  if (dst !== lastDst) {
    lastDst = dst;
    lastDstBacking = dst.buffer;
  }
  if (sb === lastDstBacking) {
    const to = dst.byteOffset + dstStart;
    keptOf(sb).bytes.copyWithin(to, from, from + n);
    return n;
  }
  const s = keptIfWarm(sb);
  if (s === null) {
    dst.set(src.subarray(srcStart, srcStart + n), dstStart);
    return n;
  }
  const shift = Math.max(MIN_CLASS_SHIFT, 32 - Math.clz32(n - 1));
  const span = 1 << shift;
  if (shift <= MAX_CLASS_SHIFT && from < MAX_VIEW_START && from + span <= sb.byteLength && dstStart + span <= dst.length) {
    const key = (from << 5) | shift;
    let view = s.views.get(key);
    if (view === undefined && s.views.size < MAX_VIEWS_PER_BACKING) {
      view = new Uint8Array(sb, from, span);
      s.views.set(key, view);
    }
    if (view !== undefined) {
      dst.set(view, dstStart);
      return n;
    }
  }
  copyWordLoop(src, srcStart, dst, dstStart, n);
  return n;
}

/** One byte at a time, front to back (distinct ranges). */
export function copyByteLoop(src: Uint8Array, srcStart: number, dst: Uint8Array, dstStart: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dstStart + i] = src[srcStart + i];
}

/** 32-bit words where both ranges have the same alignment (bytes up to a 4-byte boundary, words, the rest), else bytes; distinct backings. */
export function copyWordLoop(src: Uint8Array, srcStart: number, dst: Uint8Array, dstStart: number, n: number): void {
  const from = src.byteOffset + srcStart;
  const to = dst.byteOffset + dstStart;
  if ((from & 3) !== (to & 3)) {
    copyByteLoop(src, srcStart, dst, dstStart, n);
    return;
  }
  const sw = keptOf(src.buffer).words;
  const dw = keptOf(dst.buffer).words;
  const head = Math.min(n, (4 - (from & 3)) & 3);
  for (let i = 0; i < head; i++) dst[dstStart + i] = src[srcStart + i];
  const words = (n - head) >>> 2;
  const sw0 = (from + head) >>> 2;
  const dw0 = (to + head) >>> 2;
  for (let w = 0; w < words; w++) dw[dw0 + w] = sw[sw0 + w];
  for (let i = head + (words << 2); i < n; i++) dst[dstStart + i] = src[srcStart + i];
}
