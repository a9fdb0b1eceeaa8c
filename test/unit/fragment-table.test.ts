/**
 * The fragment table and the early-fragment hold: bounded in entries and in time.
 */
import { describe, expect, it } from 'vitest';
import { FRAGMENT_KEY_WORDS, FragmentTable } from '../../src/dataplane/fragment-table.js';
import { FRAGMENT_HOLD_SLOTS, FRAGMENT_HOLD_SLOT_BYTES, FragmentHold } from '../../src/dataplane/fragment-hold.js';

const key = (id: number): Uint32Array => {
  const k = new Uint32Array(FRAGMENT_KEY_WORDS);
  k[0] = (4 << 8) | 17;
  k[1] = id;
  k[2] = 0x0a000001;
  k[6] = 0xc6336410;
  return k;
};

describe('FragmentTable', () => {
  it.each([
    { name: 'a recorded datagram is found and refreshed by each lookup', after: 1500, lookups: [1000, 2400], found: true },
    { name: 'an entry past its timeout is gone', after: 2001, lookups: [], found: false },
    { name: 'refreshed at 1500 ms, still there at 3000 ms', after: 3000, lookups: [1500], found: true },
  ])('$name', ({ after, lookups, found }) => {
    const t = new FragmentTable(16, 2000);
    expect(t.insert(key(1), 5, 0, 7, 2, 99)).toBeGreaterThanOrEqual(0);
    for (const at of lookups) expect(t.lookup(key(1), 5, at)).toBeGreaterThanOrEqual(0);
    const s = t.lookup(key(1), 5, after);
    expect(s >= 0).toBe(found);
    if (found) expect([t.backendOf(s), t.serviceOf(s), t.flowHashOf(s)]).toEqual([7, 2, 99]);
  });

  it('a full window refuses a new datagram until its entries expire; a sweep frees expired entries', () => {
    const t = new FragmentTable(8, 100);
    for (let i = 0; i < 8; i++) expect(t.insert(key(i), 0, 0, i, 0, 0)).toBeGreaterThanOrEqual(0);
    expect(t.insert(key(100), 0, 50, 1, 0, 0)).toBe(-1);
    // At 100 ms the eight have expired: the insert frees every expired entry of its window.
    expect(t.insert(key(100), 0, 100, 1, 0, 0)).toBeGreaterThanOrEqual(0);
    expect(t.size).toBe(1);
    expect(t.lookup(key(3), 0, 100)).toBe(-1);
    expect(t.sweep(1000, 8)).toBe(1);
    expect(t.size).toBe(0);
  });

  it('refuses a bad capacity or timeout at config time', () => {
    expect(() => new FragmentTable(0, 100)).toThrow(RangeError);
    expect(() => new FragmentTable(8, 0)).toThrow(RangeError);
  });
});

describe('FragmentHold', () => {
  it('holds by datagram, releases only its fragments, expires the rest after holdMs', () => {
    const h = new FragmentHold(200);
    const frame = Buffer.alloc(100, 1);
    expect(h.hold(frame, 100, key(1), 11, 0)).toBe(true);
    expect(h.hold(frame, 60, key(2), 22, 0)).toBe(true);
    expect(h.hold(frame, 80, key(1), 11, 10)).toBe(true);
    const slots: number[] = [];
    for (let s = h.nextMatch(key(1), 11, 0); s >= 0; s = h.nextMatch(key(1), 11, s + 1)) slots.push(s);
    expect(slots.map((s) => h.length(s))).toEqual([100, 80]);
    for (const s of slots) h.free(s);
    expect(h.count).toBe(1);
    expect(h.expire(199)).toBe(0);
    expect(h.expire(200)).toBe(1);
    expect(h.count).toBe(0);
  });

  it(`is bounded: ${FRAGMENT_HOLD_SLOTS} frames, none larger than ${FRAGMENT_HOLD_SLOT_BYTES} bytes`, () => {
    const h = new FragmentHold(200);
    const frame = Buffer.alloc(FRAGMENT_HOLD_SLOT_BYTES + 1);
    expect(h.hold(frame, FRAGMENT_HOLD_SLOT_BYTES + 1, key(1), 1, 0)).toBe(false);
    for (let i = 0; i < FRAGMENT_HOLD_SLOTS; i++) expect(h.hold(frame, 64, key(i), i, 0)).toBe(true);
    expect(h.hold(frame, 64, key(9999), 9999, 0)).toBe(false);
  });
});
