import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { murmur3_32, murmur3Words2 } from '../../src/hash/murmur3.js';
import {
  RENDEZVOUS_ID_SEED,
  RENDEZVOUS_SCORE_SEED,
  hashInstanceId,
  hashInstanceIds,
  rendezvousOwners,
  rendezvousScore,
} from '../../src/hash/rendezvous.js';
import { xorshift32 as rng, shuffled } from '../fixtures/random.js';

interface MurmurReference {
  x86: { hash32(bytes: Uint8Array | number[], seed?: number): number };
}
const reference = createRequire(import.meta.url)('murmurhash3js-revisited') as MurmurReference;

const ids = (n: number, prefix = 'lb'): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}.sluice.internal`);

/** Owners of keyHash as instance ids. */
function ownerIds(keyHash: number, idList: readonly string[], hashes: Uint32Array, count: number): string[] {
  const out = new Int32Array(count);
  const k = rendezvousOwners(keyHash, hashes, count, out);
  return Array.from(out.subarray(0, k), (i) => idList[i]);
}

/** Brute-force oracle: sort all instances by (score desc, hash asc). */
function oracle(keyHash: number, idList: readonly string[], count: number): string[] {
  return idList
    .map((id) => ({ id, h: hashInstanceId(id), s: rendezvousScore(keyHash, hashInstanceId(id)) }))
    .sort((a, b) => b.s - a.s || a.h - b.h)
    .slice(0, count)
    .map((x) => x.id);
}

describe('hashing', () => {
  it('hashInstanceId is murmur3 of the UTF-8 id under the documented seed', () => {
    for (const id of ['lb-0', '10.1.2.3:7946', 'instance-ü-后', '']) {
      expect(hashInstanceId(id)).toBe(reference.x86.hash32(Array.from(Buffer.from(id, 'utf8')), RENDEZVOUS_ID_SEED));
    }
  });

  it('murmur3Words2 equals murmur3_32 over the two little-endian words', () => {
    const next = rng(5);
    const buf = new Uint8Array(8);
    const view = new DataView(buf.buffer);
    for (let i = 0; i < 1000; i++) {
      const a = next();
      const b = next();
      const seed = next();
      view.setUint32(0, a, true);
      view.setUint32(4, b, true);
      expect(murmur3Words2(a, b, seed)).toBe(murmur3_32(buf, 0, 8, seed));
    }
    view.setUint32(0, 0xdeadbeef, true);
    view.setUint32(4, 0x01020304, true);
    expect(rendezvousScore(0xdeadbeef, 0x01020304)).toBe(reference.x86.hash32(buf, RENDEZVOUS_SCORE_SEED));
  });

  it('hashInstanceIds fills a given array and rejects a short one', () => {
    const list = ids(4);
    const out = new Uint32Array(6);
    expect(hashInstanceIds(list, out)).toBe(out);
    expect(Array.from(out.subarray(0, 4))).toEqual(list.map(hashInstanceId));
    expect(() => hashInstanceIds(list, new Uint32Array(3))).toThrow(RangeError);
  });
});

describe('rendezvousOwners', () => {
  const shapes = [
    { name: 'count 1 of 5', n: 5, count: 1, expected: 1 },
    { name: 'count 2 of 5', n: 5, count: 2, expected: 2 },
    { name: 'count 5 of 5', n: 5, count: 5, expected: 5 },
    { name: 'count 7 of 5 (clamped to N)', n: 5, count: 7, expected: 5 },
    { name: 'count 0', n: 5, count: 0, expected: 0 },
    { name: 'negative count', n: 5, count: -3, expected: 0 },
    { name: 'no instances', n: 0, count: 2, expected: 0 },
  ];
  it.each(shapes)('$name: returns $expected distinct owners matching the brute-force order', ({ n, count, expected }) => {
    const list = ids(n);
    const hashes = hashInstanceIds(list);
    const next = rng(n * 100 + count + 50);
    for (let t = 0; t < 200; t++) {
      const key = next();
      const got = ownerIds(key, list, hashes, Math.max(count, 0));
      expect(got.length).toBe(expected);
      expect(new Set(got).size).toBe(expected);
      expect(got).toEqual(oracle(key, list, Math.max(expected, 0)));
    }
  });

  it('stops at out.length', () => {
    const hashes = hashInstanceIds(ids(6));
    const out = new Int32Array(2);
    expect(rendezvousOwners(12345, hashes, 4, out)).toBe(2);
  });

  it('equal scores (duplicate ids) still yield distinct indices', () => {
    const hashes = hashInstanceIds(['same', 'same', 'other']);
    const out = new Int32Array(3);
    expect(rendezvousOwners(99, hashes, 3, out)).toBe(3);
    expect(new Set(out).size).toBe(3);
  });

  const sizes = [3, 4, 5, 6, 7, 8, 9, 10].map((n) => ({ n }));
  it.each(sizes)('balance over $n instances: primary and replica shares within 10 percent on 100k keys', ({ n }) => {
    const hashes = hashInstanceIds(ids(n, `bal${n}`));
    const primary = new Array<number>(n).fill(0);
    const inTop2 = new Array<number>(n).fill(0);
    const out = new Int32Array(2);
    const next = rng(n * 7919);
    const keys = 100_000;
    for (let i = 0; i < keys; i++) {
      rendezvousOwners(next(), hashes, 2, out);
      primary[out[0]]++;
      inTop2[out[0]]++;
      inTop2[out[1]]++;
    }
    for (let i = 0; i < n; i++) {
      expect(Math.abs(primary[i] - keys / n) / (keys / n), `primary share of ${i}`).toBeLessThanOrEqual(0.1);
      expect(Math.abs(inTop2[i] - (2 * keys) / n) / ((2 * keys) / n), `top-2 share of ${i}`).toBeLessThanOrEqual(0.1);
    }
  });

  const removal = [
    { n: 3, removed: 0 },
    { n: 5, removed: 2 },
    { n: 10, removed: 9 },
  ];
  it.each(removal)('removing instance $removed of $n only moves keys it owned', ({ n, removed }) => {
    const list = ids(n, 'rm');
    const rest = list.filter((_, i) => i !== removed);
    const before = hashInstanceIds(list);
    const after = hashInstanceIds(rest);
    const next = rng(n * 31 + removed);
    let moved = 0;
    for (let i = 0; i < 20_000; i++) {
      const key = next();
      const old3 = ownerIds(key, list, before, 3);
      const now2 = ownerIds(key, rest, after, 2);
      // The new owner list is the old one with the removed instance taken out.
      expect(now2).toEqual(old3.filter((id) => id !== list[removed]).slice(0, 2));
      if (old3[0] !== now2[0]) {
        expect(old3[0]).toBe(list[removed]);
        moved++;
      }
    }
    expect(moved).toBeGreaterThan(0);
  });

  const addition = [{ n: 3 }, { n: 9 }];
  it.each(addition)('adding an instance to $n only moves keys to the new instance', ({ n }) => {
    const list = ids(n, 'add');
    const more = [...list, 'add-new.sluice.internal'];
    const before = hashInstanceIds(list);
    const after = hashInstanceIds(more);
    const next = rng(n + 4000);
    let taken = 0;
    const keys = 50_000;
    for (let i = 0; i < keys; i++) {
      const key = next();
      const was = ownerIds(key, list, before, 1)[0];
      const now = ownerIds(key, more, after, 1)[0];
      if (was !== now) {
        expect(now).toBe('add-new.sluice.internal');
        taken++;
      }
    }
    expect(Math.abs(taken - keys / (n + 1)) / (keys / (n + 1))).toBeLessThanOrEqual(0.1);
  });

  const orders = [{ n: 3 }, { n: 6 }, { n: 10 }];
  it.each(orders)('the order of $n instance ids does not matter', ({ n }) => {
    const list = ids(n, 'ord');
    const hashes = hashInstanceIds(list);
    const next = rng(n * 13);
    const perms = [0, 1, 2, 3].map(() => shuffled(list, next)).map((p) => ({ p, h: hashInstanceIds(p) }));
    for (let i = 0; i < 5000; i++) {
      const key = next();
      const base = ownerIds(key, list, hashes, 2);
      for (const { p, h } of perms) expect(ownerIds(key, p, h, 2)).toEqual(base);
    }
  });
});
