import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  MAGLEV_DEFAULT_SIZE,
  MAGLEV_OFFSET_SEED,
  MAGLEV_SKIP_SEED,
  buildMaglevTable,
  isPrime,
  maglevLookup,
  nextPrime,
  type MaglevBackend,
} from '../../src/hash/maglev.js';
import { murmur3_32 } from '../../src/hash/murmur3.js';
import { xorshift32 as rng, shuffled } from '../fixtures/random.js';

interface MurmurReference {
  x86: { hash32(bytes: Uint8Array | number[], seed?: number): number };
}
const require = createRequire(import.meta.url);
const reference = require('murmurhash3js-revisited') as MurmurReference;

const M = MAGLEV_DEFAULT_SIZE;

function equalBackends(n: number, prefix = 'be'): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({ key: `${prefix}-10.0.${i >> 8}.${i & 255}:80`, weight: 1 }));
}

function randomWeighted(n: number, next: () => number, prefix: string): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({ key: `${prefix}-${i}`, weight: 1 + (next() % 100) }));
}

/** The table as backend keys (order-free view). */
function keysOf(table: Int32Array, backends: readonly MaglevBackend[]): string[] {
  return Array.from(table, (i) => (i < 0 ? '' : backends[i].key));
}

function countsOf(table: Int32Array, n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const i of table) c[i]++;
  return c;
}

/** Primes below `limit` by a sieve: an oracle independent of isPrime's trial division. */
function sieve(limit: number): Uint8Array {
  const composite = new Uint8Array(limit);
  composite[0] = 1;
  composite[1] = 1;
  for (let i = 2; i * i < limit; i++) if (!composite[i]) for (let j = i * i; j < limit; j += i) composite[j] = 1;
  return composite;
}

/**
 * A deliberately naive second implementation of the documented algorithm, hashing with the
 * reference murmur3 library: catches any silent change to the table (GLB's golden-rows idea).
 */
function referenceTable(backends: readonly MaglevBackend[], size: number): number[] {
  const live = backends
    .map((b, i) => ({ key: b.key, weight: b.weight, index: i }))
    .filter((b) => b.weight > 0)
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const table = new Array<number>(size).fill(-1);
  if (live.length === 0) return table;
  const maxW = Math.max(...live.map((b) => b.weight));
  const prefs = live.map((b) => {
    const bytes = Array.from(Buffer.from(b.key, 'utf8'));
    return {
      offset: reference.x86.hash32(bytes, MAGLEV_OFFSET_SEED) % size,
      skip: (reference.x86.hash32(bytes, MAGLEV_SKIP_SEED) % (size - 1)) + 1,
      j: 0,
      credit: 0,
    };
  });
  let filled = 0;
  while (filled < size) {
    for (let r = 0; r < live.length && filled < size; r++) {
      const pr = prefs[r];
      pr.credit += live[r].weight;
      while (pr.credit >= maxW && filled < size) {
        let c: number;
        do c = (pr.offset + pr.j++ * pr.skip) % size;
        while (table[c] !== -1);
        table[c] = live[r].index;
        filled++;
        pr.credit -= maxW;
      }
    }
  }
  return table;
}

describe('isPrime / nextPrime', () => {
  const composite = sieve(20000);
  it('isPrime agrees with a sieve on 0..19999', () => {
    for (let n = 0; n < 20000; n++) expect(isPrime(n), `n=${n}`).toBe(composite[n] === 0);
  });
  it('nextPrime returns the smallest prime >= n on 0..19000', () => {
    for (let n = 0; n < 19000; n++) {
      let p = Math.max(n, 2);
      while (composite[p]) p++;
      expect(nextPrime(n), `n=${n}`).toBe(p);
    }
  });
  const odd = [
    { name: 'negative', n: -7, prime: false },
    { name: 'fraction', n: 7.5, prime: false },
    { name: 'NaN', n: Number.NaN, prime: false },
    { name: 'default size', n: MAGLEV_DEFAULT_SIZE, prime: true },
    { name: '2^16', n: 65536, prime: false },
    { name: 'large prime 2^31-1', n: 2147483647, prime: true },
    { name: 'large composite 65537*65539', n: 65537 * 65539, prime: false },
  ];
  it.each(odd)('isPrime($name) = $prime', ({ n, prime }) => expect(isPrime(n)).toBe(prime));
});

describe('buildMaglevTable: validation (config time)', () => {
  const badSizes = [
    { name: 'zero', size: 0 },
    { name: 'one', size: 1 },
    { name: 'even 65536', size: 65536 },
    { name: 'odd composite 65535', size: 65535 },
    { name: 'fraction', size: 13.5 },
    { name: 'NaN', size: Number.NaN },
    { name: 'negative prime', size: -13 },
  ];
  it.each(badSizes)('non-prime size throws: $name', ({ size }) => {
    expect(() => buildMaglevTable(equalBackends(3), size)).toThrow(RangeError);
  });

  const badInputs: { name: string; backends: MaglevBackend[] }[] = [
    { name: 'negative weight', backends: [{ key: 'a', weight: -1 }] },
    { name: 'NaN weight', backends: [{ key: 'a', weight: Number.NaN }] },
    { name: 'infinite weight', backends: [{ key: 'a', weight: Number.POSITIVE_INFINITY }] },
    { name: 'duplicate key', backends: [{ key: 'a', weight: 1 }, { key: 'b', weight: 1 }, { key: 'a', weight: 2 }] },
  ];
  it.each(badInputs)('rejects $name', ({ backends }) => {
    expect(() => buildMaglevTable(backends, 13)).toThrow(RangeError);
  });

  it('rejects an output array of the wrong length', () => {
    expect(() => buildMaglevTable(equalBackends(3), 13, new Int32Array(17))).toThrow(RangeError);
  });

  const noBackend: { name: string; backends: MaglevBackend[] }[] = [
    { name: 'empty list', backends: [] },
    { name: 'all weights 0', backends: [{ key: 'a', weight: 0 }, { key: 'b', weight: 0 }] },
  ];
  it.each(noBackend)('$name: every entry is -1', ({ backends }) => {
    const t = buildMaglevTable(backends, 101);
    expect(t.length).toBe(101);
    expect(t.every((v) => v === -1)).toBe(true);
  });
});

describe('buildMaglevTable: the table', () => {
  const referenceCases: { name: string; backends: MaglevBackend[]; size: number }[] = [
    { name: 'one backend, M=13', backends: equalBackends(1), size: 13 },
    { name: '5 equal, M=13', backends: equalBackends(5), size: 13 },
    { name: '20 equal, M=13 (more backends than slots)', backends: equalBackends(20), size: 13 },
    { name: '10 equal, M=65537', backends: equalBackends(10), size: M },
    { name: '4 weighted 1..4, M=65537', backends: [1, 2, 3, 4].map((w, i) => ({ key: `w${i}`, weight: w })), size: M },
    { name: '30 random weights with zeros, M=4099', backends: randomWeighted(30, rng(3), 'r').map((b, i) => (i % 7 === 0 ? { ...b, weight: 0 } : b)), size: 4099 },
    { name: 'fractional weights, M=1009', backends: [0.5, 1.25, 3].map((w, i) => ({ key: `f${i}`, weight: w })), size: 1009 },
    { name: 'non-ASCII keys', backends: ['bäck-1', 'bäck-2', '后端-3', 'b-4'].map((key) => ({ key, weight: 1 })), size: 211 },
  ];
  it.each(referenceCases)('matches the naive reference implementation: $name', ({ backends, size }) => {
    expect(Array.from(buildMaglevTable(backends, size))).toEqual(referenceTable(backends, size));
  });

  it('offset and skip use the documented seeds (murmur3 of the key bytes)', () => {
    // With one backend the first slot claimed is its offset, the next offset + skip.
    const key = 'solo:443';
    const bytes = new TextEncoder().encode(key);
    const size = 101;
    const t = buildMaglevTable([{ key, weight: 1 }], size);
    expect(t.every((v) => v === 0)).toBe(true);
    const offset = murmur3_32(bytes, 0, bytes.length, MAGLEV_OFFSET_SEED) % size;
    const skip = (murmur3_32(bytes, 0, bytes.length, MAGLEV_SKIP_SEED) % (size - 1)) + 1;
    const ref = referenceTable([{ key, weight: 1 }], size);
    expect(ref[offset]).toBe(0);
    expect(ref[(offset + skip) % size]).toBe(0);
  });

  const orderCases: { name: string; backends: MaglevBackend[] }[] = [
    { name: '100 equal', backends: equalBackends(100) },
    { name: '50 random weights', backends: randomWeighted(50, rng(11), 'o') },
    { name: 'weights with zeros', backends: randomWeighted(40, rng(12), 'z').map((b, i) => (i % 5 === 0 ? { ...b, weight: 0 } : b)) },
  ];
  it.each(orderCases)('same set in any order gives the identical table by key: $name', ({ backends }) => {
    const base = keysOf(buildMaglevTable(backends, M), backends);
    const next = rng(backends.length * 31);
    for (let trial = 0; trial < 5; trial++) {
      const perm = shuffled(backends, next);
      const t = buildMaglevTable(perm, M);
      expect(keysOf(t, perm)).toEqual(base);
    }
  });

  it('returns indices into the input array (not into a sorted copy)', () => {
    const backends = [{ key: 'zz', weight: 1 }, { key: 'aa', weight: 0 }, { key: 'mm', weight: 3 }];
    const t = buildMaglevTable(backends, 101);
    const c = countsOf(t, 3);
    expect(c[1]).toBe(0);
    expect(c[0] + c[2]).toBe(101);
    expect(c[2]).toBeGreaterThan(2 * c[0]);
  });

  const equalCases = [
    { n: 1, size: M },
    { n: 2, size: M },
    { n: 3, size: M },
    { n: 7, size: M },
    { n: 100, size: M },
    { n: 1000, size: M },
    { n: 5, size: 13 },
    { n: 20, size: 13 },
    { n: 250, size: 251 },
  ];
  it.each(equalCases)('equal weights, N=$n M=$size: every backend gets floor(M/N) or ceil(M/N)', ({ n, size }) => {
    const t = buildMaglevTable(equalBackends(n), size);
    for (const c of countsOf(t, n)) {
      expect(c === Math.floor(size / n) || c === Math.ceil(size / n)).toBe(true);
    }
  });

  /*
   * Weighted bound. Credit accounting makes backend i (weight w, max weight m) hold
   * floor(t*w/m) slots after t full rounds; filling stops inside round R+1, so with x = R/m:
   *   x*w - 1 <= c_i <= x*w + w/m          and, summing over N backends,  x*W - N <= M <= x*W + W/m.
   * Hence |c_i - M*w/W| <= 1 + w/m + N*w/W <= 2 + N*w/W. Relative to the expected count E = M*w/W
   * that is 2/E + N/M: at M = 65537 every backend with E >= ~210 (N = 50) is within 1%, and a
   * smaller share is within one or two whole slots, the finest a slot count can resolve.
   */
  // onePercent: also require |error| <= max(1 slot, 1 percent of the expected count). Not for
  // N = 1000, where M/N is 65 slots and one slot alone is 1.5 percent of a share.
  const weightedCases: { name: string; backends: MaglevBackend[]; onePercent: boolean }[] = [
    { name: 'weights 1,2,3,4', backends: [1, 2, 3, 4].map((w, i) => ({ key: `w-${i}`, weight: w })), onePercent: true },
    ...[101, 202, 303, 404, 505].map((seed) => ({
      name: `50 random weights 1..100 (seed ${seed})`,
      backends: randomWeighted(50, rng(seed), `s${seed}`),
      onePercent: true,
    })),
    { name: 'fractional weights', backends: [0.1, 0.25, 1.5, 2, 7.75].map((w, i) => ({ key: `fr-${i}`, weight: w })), onePercent: true },
    { name: '1000 random weights 1..100', backends: randomWeighted(1000, rng(9), 'k'), onePercent: false },
  ];
  it.each(weightedCases)('weighted shares within the derived bound (and 1 percent or one slot): $name', ({ backends, onePercent }) => {
    const t = buildMaglevTable(backends, M);
    const counts = countsOf(t, backends.length);
    const W = backends.reduce((a, b) => a + b.weight, 0);
    const n = backends.length;
    for (let i = 0; i < n; i++) {
      const expected = (M * backends[i].weight) / W;
      const err = Math.abs(counts[i] - expected);
      expect(err, `${backends[i].key}: ${counts[i]} vs ${expected}`).toBeLessThanOrEqual(2 + (n * backends[i].weight) / W);
      if (onePercent) expect(err, `${backends[i].key}: ${counts[i]} vs ${expected}`).toBeLessThanOrEqual(Math.max(1, 0.01 * expected));
    }
  });

  it('weights 1,2,3,4: each share within 1 percent of w/10 (all shares are large)', () => {
    const backends = [1, 2, 3, 4].map((w, i) => ({ key: `q-${i}`, weight: w }));
    const counts = countsOf(buildMaglevTable(backends, M), 4);
    counts.forEach((c, i) => expect(Math.abs(c / M - backends[i].weight / 10)).toBeLessThanOrEqual(0.01 * (backends[i].weight / 10)));
  });

  it('weight 0 gets no slots; the others share the whole table', () => {
    const backends = randomWeighted(20, rng(77), 'zero').map((b, i) => (i % 3 === 0 ? { ...b, weight: 0 } : b));
    const counts = countsOf(buildMaglevTable(backends, M), backends.length);
    backends.forEach((b, i) => {
      if (b.weight === 0) expect(counts[i]).toBe(0);
      else expect(counts[i]).toBeGreaterThan(0);
    });
    expect(counts.reduce((a, b) => a + b, 0)).toBe(M);
  });

  it('reuses the out array', () => {
    const backends = equalBackends(9);
    const out = new Int32Array(1009).fill(1234);
    const t = buildMaglevTable(backends, 1009, out);
    expect(t).toBe(out);
    expect(Array.from(t)).toEqual(Array.from(buildMaglevTable(backends, 1009)));
  });
});

describe('buildMaglevTable: disruption', () => {
  /**
   * Among the slots the changed backend owns neither before nor after (the slots that had no
   * reason to move), the fraction whose owner changed anyway.
   */
  function otherMoved(before: string[], after: string[], changed: string): number {
    let others = 0;
    let moved = 0;
    for (let s = 0; s < before.length; s++) {
      if (before[s] === changed || after[s] === changed) continue;
      others++;
      if (before[s] !== after[s]) moved++;
    }
    return moved / others;
  }

  const removeCases: { name: string; backends: MaglevBackend[]; removeIndex: number[] }[] = [
    { name: '100 equal', backends: equalBackends(100), removeIndex: [0, 1, 17, 50, 99] },
    { name: '100 random weights', backends: randomWeighted(100, rng(5), 'rw'), removeIndex: [0, 33, 66] },
  ];
  it.each(removeCases)('removing 1 of $name moves <= 1 percent of the other backends\' slots', ({ backends, removeIndex }) => {
    const before = keysOf(buildMaglevTable(backends, M), backends);
    const heaviest = backends.reduce((best, b, i) => (b.weight > backends[best].weight ? i : best), 0);
    for (const r of [...removeIndex, heaviest]) {
      const removed = backends[r].key;
      const rest = backends.filter((_, i) => i !== r);
      const after = keysOf(buildMaglevTable(rest, M), rest);
      expect(after.includes(removed)).toBe(false);
      expect(otherMoved(before, after, removed), `remove ${removed}`).toBeLessThanOrEqual(0.01);
    }
  });

  const addCases = [{ n: 10 }, { n: 100 }, { n: 1000 }];
  it.each(addCases)('adding one to $n equal backends takes about 1/(N+1) and moves <= 1 percent of the rest', ({ n }) => {
    const backends = equalBackends(n);
    const before = keysOf(buildMaglevTable(backends, M), backends);
    for (const added of ['new-a:80', 'new-b:80', 'new-c:80']) {
      const more = [...backends, { key: added, weight: 1 }];
      const after = keysOf(buildMaglevTable(more, M), more);
      const taken = after.filter((k) => k === added).length;
      expect(taken === Math.floor(M / (n + 1)) || taken === Math.ceil(M / (n + 1))).toBe(true);
      let changed = 0;
      for (let s = 0; s < M; s++) if (before[s] !== after[s]) changed++;
      expect(changed / M).toBeGreaterThanOrEqual(taken / M);
      expect(changed / M - 1 / (n + 1)).toBeLessThanOrEqual(0.01);
      expect(otherMoved(before, after, added)).toBeLessThanOrEqual(0.01);
    }
  });
});

describe('maglevLookup', () => {
  it('indexes table[hash mod M] for unsigned 32-bit hashes, including >= 2^31', () => {
    const t = buildMaglevTable(equalBackends(7), 1009);
    const next = rng(1);
    const hashes = [0, 1, 1008, 1009, 0x7fffffff, 0x80000000, 0xffffffff, ...Array.from({ length: 1000 }, next)];
    for (const h of hashes) expect(maglevLookup(t, h)).toBe(t[Number(BigInt(h) % 1009n)]);
  });
});

describe('determinism across processes', () => {
  it('a separate process with another locale and time zone builds the identical table', () => {
    const backends = randomWeighted(200, rng(2024), 'proc');
    const local = buildMaglevTable(backends, M);
    const dir = mkdtempSync(join(tmpdir(), 'sluice-maglev-'));
    try {
      const modulePath = fileURLToPath(new URL('../../src/hash/maglev.ts', import.meta.url));
      const script = join(dir, 'child.ts');
      writeFileSync(
        script,
        `import { buildMaglevTable } from ${JSON.stringify(modulePath)};\n` +
          `const backends = JSON.parse(process.env.SLUICE_BACKENDS ?? '[]').reverse();\n` +
          `const t = buildMaglevTable(backends, ${M});\n` +
          `process.stdout.write(JSON.stringify(Array.from(t, (i) => backends[i].key)));\n`,
      );
      const viteNode = join(fileURLToPath(new URL('../../node_modules/.bin/', import.meta.url)), 'vite-node');
      const child = spawnSync(viteNode, [script], {
        encoding: 'utf8',
        env: { ...process.env, SLUICE_BACKENDS: JSON.stringify(backends), LANG: 'tr_TR.UTF-8', LC_ALL: 'tr_TR.UTF-8', TZ: 'Pacific/Chatham' },
        maxBuffer: 64 * 1024 * 1024,
      });
      expect(child.status, child.stderr).toBe(0);
      const remote = JSON.parse(child.stdout) as string[];
      expect(remote).toEqual(keysOf(local, backends));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
