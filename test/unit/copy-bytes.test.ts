/**
 * copyBytes copies exactly what Buffer.copy would, on each of its paths: short (byte loop), one
 * backing (copyWithin, overlapping too), two backings (kept view + set, or the word/byte loops
 * where no view fits), and cuts the copy short where either array ends. Bytes past the copy may
 * be overwritten only inside dst, never past its end. Each case copies twice: the first copy from
 * a backing not seen before takes the cold path (set from a subarray), the second the kept one.
 */
import { describe, expect, it } from 'vitest';
import { copyBytes, copyByteLoop, copyWordLoop } from '../../src/packet/copy-bytes.js';

const pattern = (n: number, seed: number): Buffer => {
  const b = Buffer.allocUnsafeSlow(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};

interface CopyCase {
  name: string;
  /** Source and target: views into one backing, or two. */
  shared: boolean;
  srcOff: number;
  srcLen: number;
  dstOff: number;
  dstLen: number;
  srcStart: number;
  dstStart: number;
  n: number;
}

const CASES: CopyCase[] = [
  { name: 'short, two backings', shared: false, srcOff: 0, srcLen: 64, dstOff: 0, dstLen: 64, srcStart: 3, dstStart: 5, n: 16 },
  { name: 'frame, two backings (kept view)', shared: false, srcOff: 0, srcLen: 10240, dstOff: 0, dstLen: 10240, srcStart: 14, dstStart: 34, n: 1500 },
  { name: 'frame, two backings, view past the end of dst (word loop)', shared: false, srcOff: 0, srcLen: 4096, dstOff: 0, dstLen: 1600, srcStart: 14, dstStart: 34, n: 1500 },
  { name: 'frame, two backings, misaligned, no view fits (byte loop)', shared: false, srcOff: 1, srcLen: 1600, dstOff: 0, dstLen: 1600, srcStart: 14, dstStart: 34, n: 1500 },
  { name: 'frame, one backing (copyWithin)', shared: true, srcOff: 0, srcLen: 10240, dstOff: 10240, dstLen: 10240, srcStart: 0, dstStart: 0, n: 1514 },
  { name: 'one backing, overlapping forward', shared: true, srcOff: 0, srcLen: 4096, dstOff: 100, dstLen: 4096, srcStart: 0, dstStart: 0, n: 1000 },
  { name: 'cut short by the end of dst', shared: false, srcOff: 0, srcLen: 10240, dstOff: 0, dstLen: 1000, srcStart: 0, dstStart: 900, n: 1500 },
  { name: 'cut short by the end of src', shared: false, srcOff: 0, srcLen: 200, dstOff: 0, dstLen: 4096, srcStart: 150, dstStart: 0, n: 1500 },
  { name: 'nothing to copy', shared: false, srcOff: 0, srcLen: 100, dstOff: 0, dstLen: 100, srcStart: 100, dstStart: 0, n: 10 },
  { name: 'the whole source (set of the source itself, no view)', shared: false, srcOff: 64, srcLen: 60, dstOff: 0, dstLen: 2048, srcStart: 0, dstStart: 4, n: 60 },
];

describe('copyBytes', () => {
  it.each(CASES)('$name', (c) => {
    const backingA = pattern(c.shared ? 32768 : c.srcOff + c.srcLen + 64, 7);
    const backingB = c.shared ? backingA : pattern(c.dstOff + c.dstLen + 64, 11);
    const src = backingA.subarray(c.srcOff, c.srcOff + c.srcLen);
    const dst = backingB.subarray(c.dstOff, c.dstOff + c.dstLen);
    // What Buffer.copy does, on copies of both backings.
    const refA = Buffer.from(backingA);
    const refB = c.shared ? refA : Buffer.from(backingB);
    const want = refA.subarray(c.srcOff, c.srcOff + c.srcLen).copy(refB.subarray(c.dstOff, c.dstOff + c.dstLen), c.dstStart, c.srcStart, c.srcStart + c.n);
    const afterDst = Buffer.from(backingB.subarray(c.dstOff + c.dstLen));
    const initialB = Buffer.from(backingB);
    for (const pass of ['cold', 'kept']) {
      backingB.set(initialB);
      if (c.shared) backingA.set(initialB);
      const got = copyBytes(src, c.srcStart, dst, c.dstStart, c.n);
      expect(got, pass).toBe(want);
      expect(dst.subarray(0, c.dstStart + got).equals(refB.subarray(c.dstOff, c.dstOff + c.dstStart + got)), pass).toBe(true);
      // Past dst's end nothing changed.
      expect(backingB.subarray(c.dstOff + c.dstLen).equals(afterDst), pass).toBe(true);
    }
  });

  it('copies from many backings in turn (a frame per ArrayBuffer) are right, each one', () => {
    const frames = Array.from({ length: 64 }, (_, i) => pattern(200, i));
    const dst = Buffer.alloc(256);
    for (let round = 0; round < 3; round++) {
      for (const [i, f] of frames.entries()) {
        expect(copyBytes(f, 14, dst, 2, 150)).toBe(150);
        expect(dst.subarray(2, 152).equals(f.subarray(14, 164)), `frame ${i}`).toBe(true);
      }
    }
  });

  it.each([
    { name: 'byte loop', copy: copyByteLoop },
    { name: 'word loop, same alignment', copy: copyWordLoop },
  ])('$name copies exactly n bytes', ({ copy }) => {
    const src = pattern(256, 3);
    const dst = Buffer.alloc(256);
    copy(src, 6, dst, 10, 101);
    const want = Buffer.alloc(256);
    src.copy(want, 10, 6, 107);
    expect(dst.equals(want)).toBe(true);
  });
});
