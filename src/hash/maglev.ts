/**
 * Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016) with a prime table size M.
 *
 * Each backend has a preference list, a permutation of the M slots given by
 *   slot_j = (offset + j * skip) mod M,  offset = h1(key) mod M,  skip = h2(key) mod (M - 1) + 1
 * with h1, h2 murmur3 of the key's UTF-8 bytes under two fixed seeds; M prime makes every skip a
 * generator, so each list visits every slot. Backends then take turns, in key order, claiming the
 * next still-free slot of their own list until the table is full.
 *
 * Weights: every round each backend earns `weight` credit and claims one slot per `maxWeight`
 * of credit it holds (integer-exact for integer weights). The heaviest backend claims exactly
 * one slot per round, a backend of weight w claims floor(r * w / maxWeight) slots after r full
 * rounds, so with W = sum of weights and N backends its final count c satisfies
 *   |c - M * w / W| <= 2 + N * w / W
 * (derivation in test/unit/maglev.test.ts, which checks it). Equal weights degenerate to plain
 * Maglev: one slot per backend per round, so everyone gets floor(M/N) or ceil(M/N).
 *
 * Determinism (design invariant 2): the table depends only on the set of (key, weight). Backends
 * are ordered by key with a code-unit comparison (never localeCompare, never input order), and
 * nothing reads a clock, Math.random or Map iteration order.
 */
import { murmur3_32 } from './murmur3.js';

/** Default table size: prime, and large enough for ~1% balance with up to a few hundred backends. */
export const MAGLEV_DEFAULT_SIZE = 65537;

/** Fixed seeds for the offset and skip hashes. Changing either changes every table everywhere. */
export const MAGLEV_OFFSET_SEED = 0x5a17ce01;
export const MAGLEV_SKIP_SEED = 0x0c0ffee5;

/**
 * Largest accepted table size, and the config's ceiling too (schema/sluice.schema.json states the
 * same number): a prime, ~100 slots per backend for 10,000 backends, 4 MB as an Int32Array.
 */
export const MAGLEV_MAX_SIZE = 1_000_003;

export interface MaglevBackend {
  /** Stable identity of the backend (for example "10.0.0.7:80"); unique within one table. */
  readonly key: string;
  /** Relative weight, finite and >= 0; 0 means the backend takes no new flows. */
  readonly weight: number;
}

/** Trial division by 6k +- 1; table sizes are at most MAGLEV_MAX_SIZE, so at most ~170 steps. */
export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n < 4) return true;
  if (n % 2 === 0 || n % 3 === 0) return false;
  for (let d = 5; d * d <= n; d += 6) {
    if (n % d === 0 || n % (d + 2) === 0) return false;
  }
  return true;
}

/** Smallest prime >= n. */
export function nextPrime(n: number): number {
  let c = Math.max(2, Math.ceil(n));
  while (!isPrime(c)) c++;
  return c;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const utf8 = new TextEncoder();

/**
 * Build the Maglev table: `size` entries, each an index into `backends` (the caller's array, in
 * the caller's order), or -1 everywhere when no backend has a weight > 0. Config-time code: it
 * throws a RangeError on a non-prime size, a bad weight or a duplicate key.
 * `out`, if given, must have exactly `size` entries and is filled and returned.
 */
export function buildMaglevTable(
  backends: readonly MaglevBackend[],
  size: number,
  out?: Int32Array,
): Int32Array {
  if (!isPrime(size) || size > MAGLEV_MAX_SIZE) {
    throw new RangeError(
      `maglev: table size ${size} must be a prime <= ${MAGLEV_MAX_SIZE} (for example ${MAGLEV_DEFAULT_SIZE}, or nextPrime(${size}) = ${Number.isFinite(size) ? nextPrime(size) : '?'})`,
    );
  }
  const table = out ?? new Int32Array(size);
  if (table.length !== size) {
    throw new RangeError(`maglev: output table has ${table.length} entries, expected ${size}`);
  }

  // Validate and order by key. Only backends with weight > 0 take part.
  const order: number[] = [];
  const seen = new Set<string>();
  let maxWeight = 0;
  for (let i = 0; i < backends.length; i++) {
    const { key, weight } = backends[i];
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) {
      throw new RangeError(`maglev: backends[${i}] (${JSON.stringify(key)}) has weight ${weight}; weights must be finite numbers >= 0`);
    }
    if (seen.has(key)) {
      throw new RangeError(`maglev: backends[${i}] repeats key ${JSON.stringify(key)}; keys must be unique`);
    }
    seen.add(key);
    if (weight > 0) {
      order.push(i);
      if (weight > maxWeight) maxWeight = weight;
    }
  }
  table.fill(-1);
  const n = order.length;
  if (n === 0) return table;
  order.sort((a, b) => compareKeys(backends[a].key, backends[b].key));

  // Per backend (in key order): next preferred slot, skip, weight, credit.
  const next = new Int32Array(n);
  const skip = new Int32Array(n);
  const weight = new Float64Array(n);
  const credit = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    const b = backends[order[r]];
    const bytes = utf8.encode(b.key);
    next[r] = murmur3_32(bytes, 0, bytes.length, MAGLEV_OFFSET_SEED) % size;
    skip[r] = (murmur3_32(bytes, 0, bytes.length, MAGLEV_SKIP_SEED) % (size - 1)) + 1;
    weight[r] = b.weight;
  }

  // Fill with indices into `order`; mapped back to input indices at the end.
  let filled = 0;
  while (filled < size) {
    for (let r = 0; r < n && filled < size; r++) {
      let c = credit[r] + weight[r];
      while (c >= maxWeight && filled < size) {
        let s = next[r];
        while (table[s] >= 0) {
          s += skip[r];
          if (s >= size) s -= size;
        }
        table[s] = r;
        filled++;
        s += skip[r];
        if (s >= size) s -= size;
        next[r] = s;
        c -= maxWeight;
      }
      credit[r] = c;
    }
  }
  for (let s = 0; s < size; s++) table[s] = order[table[s]];
  return table;
}

/** The backend index for a flow hash (unsigned 32-bit): table[hash mod M]. */
export function maglevLookup(table: Int32Array, hash: number): number {
  return table[(hash >>> 0) % table.length];
}
