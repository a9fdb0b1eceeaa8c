/**
 * OwnerStore: insert/refresh/remove, expiry on lookup and by an incremental sweep, and the
 * capacity bound (the least recently written entry is evicted and counted).
 */
import { describe, expect, it } from 'vitest';
import { tokenKey } from '../../src/control/codec.js';
import { OwnerStore } from '../../src/control/owner-store.js';

const b1 = { service: 'web', address: '10.0.0.1' };
const b2 = { service: 'web', address: '10.0.0.2' };
const flow = (i: number): Uint8Array => Uint8Array.from([10, 0, 0, i & 0xff, 10, 9, 9, 9, 0x30, 0x39, 0, 80, 6]);

describe('OwnerStore', () => {
  it('stores, refreshes and removes; flow and token keys never collide', () => {
    const s = new OwnerStore(8);
    const key = Uint8Array.from([1, 2, 3, 4]);
    expect(s.put('token', key, b1, 1000, 0)).toBe('inserted');
    key[0] = 9; // the store kept a copy
    expect(s.lookup('token', tokenKey(0x01020304), 10)?.backend).toEqual(b1);
    expect(s.put('token', tokenKey(0x01020304), b2, 1000, 20)).toBe('updated');
    expect(s.lookup('token', tokenKey(0x01020304), 30)).toMatchObject({ backend: b2, expiresAt: 1020, updatedAt: 20 });
    expect(s.lookup('flow', flow(1), 30)).toBeUndefined();
    expect(s.remove('token', tokenKey(0x01020304))).toBe(true);
    expect(s.remove('token', tokenKey(0x01020304))).toBe(false);
    expect(s.size).toBe(0);
    expect(s.counters).toEqual({ inserts: 1, updates: 1, removals: 1, evictions: 0, expirations: 0 });
  });

  const expiry: { name: string; ttl: number; at: number; found: boolean }[] = [
    { name: 'just before expiry', ttl: 100, at: 99, found: true },
    { name: 'at expiry', ttl: 100, at: 100, found: false },
    { name: 'long after', ttl: 100, at: 10_000, found: false },
  ];
  for (const c of expiry) {
    it(`lookup ${c.name}`, () => {
      const s = new OwnerStore(4);
      s.put('flow', flow(1), b1, c.ttl, 0);
      expect(s.lookup('flow', flow(1), c.at) !== undefined).toBe(c.found);
      expect(s.size).toBe(c.found ? 1 : 0);
      expect(s.counters.expirations).toBe(c.found ? 0 : 1);
    });
  }

  it('evicts the least recently written entry when full, and counts it', () => {
    const s = new OwnerStore(3);
    for (let i = 0; i < 3; i++) s.put('flow', flow(i), b1, 1000, i);
    s.put('flow', flow(0), b1, 1000, 5); // refresh: flow(1) is now the oldest write
    s.put('flow', flow(3), b1, 1000, 6);
    expect([0, 1, 2, 3].map((i) => s.lookup('flow', flow(i), 7) !== undefined)).toEqual([true, false, true, true]);
    s.put('flow', flow(4), b1, 1000, 8);
    expect(s.lookup('flow', flow(2), 9)).toBeUndefined();
    expect(s.size).toBe(3);
    expect(s.counters.evictions).toBe(2);
  });

  it('sweeps expired entries in budgeted slices that resume where they stopped', () => {
    const s = new OwnerStore(100);
    for (let i = 0; i < 50; i++) s.put('flow', flow(i), b1, i % 2 === 0 ? 10 : 1000, 0);
    const removed: number[] = [];
    for (let round = 0; round < 6; round++) removed.push(s.sweep(100, 10));
    expect(removed.slice(0, 5)).toEqual([5, 5, 5, 5, 5]);
    expect(removed[5]).toBe(0);
    expect(s.size).toBe(25);
    expect(s.counters.expirations).toBe(25);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new OwnerStore(0)).toThrow(RangeError);
  });
});
