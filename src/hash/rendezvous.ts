/**
 * Rendezvous (highest random weight) hashing: the owners of a flow key (or MPTCP token) are the
 * `count` live instances with the highest score(keyHash, instance). Every instance that knows
 * the same set of live instance ids picks the same owners, whatever order it learned them in,
 * and removing an instance only moves the keys it owned (each to its next-best instance).
 *
 * Instance ids are hashed once (hashInstanceIds) into a Uint32Array; rendezvousOwners then
 * allocates nothing and costs count * N murmur3 rounds of 8 bytes.
 */
import { murmur3_32, murmur3Words2 } from './murmur3.js';

/** Seed for hashing instance ids. Fixed: changing it changes every owner everywhere. */
export const RENDEZVOUS_ID_SEED = 0x52dce729;
/** Seed for the per-(key, instance) score. */
export const RENDEZVOUS_SCORE_SEED = 0x3c6ef372;

const utf8 = new TextEncoder();

/** murmur3 of the id's UTF-8 bytes under RENDEZVOUS_ID_SEED. */
export function hashInstanceId(id: string): number {
  const bytes = utf8.encode(id);
  return murmur3_32(bytes, 0, bytes.length, RENDEZVOUS_ID_SEED);
}

/** Hash instance ids once, when the membership changes (not per packet). */
export function hashInstanceIds(ids: readonly string[], out?: Uint32Array): Uint32Array {
  const hashes = out ?? new Uint32Array(ids.length);
  if (hashes.length < ids.length) {
    throw new RangeError(`rendezvous: output has ${hashes.length} entries for ${ids.length} instance ids`);
  }
  for (let i = 0; i < ids.length; i++) hashes[i] = hashInstanceId(ids[i]);
  return hashes;
}

/** The score of one instance for one key: murmur3 of (keyHash, instanceHash). */
export function rendezvousScore(keyHash: number, instanceHash: number): number {
  return murmur3Words2(keyHash, instanceHash, RENDEZVOUS_SCORE_SEED);
}

/**
 * Write into out[0..k) the indices (into `instances`) of the k = min(count, instances.length,
 * out.length) instances with the highest score for keyHash, best first, and return k.
 * Ties (equal 32-bit scores) go to the smaller instance hash, then the smaller index, so the
 * order of `instances` never matters for distinct ids.
 */
export function rendezvousOwners(keyHash: number, instances: Uint32Array, count: number, out: Int32Array): number {
  const n = instances.length;
  let k = count < n ? count : n;
  if (out.length < k) k = out.length;
  if (k < 0) k = 0;
  let prevScore = 0;
  let prevHash = 0;
  let prevIdx = -1;
  for (let r = 0; r < k; r++) {
    let best = -1;
    let bestScore = 0;
    let bestHash = 0;
    for (let i = 0; i < n; i++) {
      const h = instances[i];
      const s = murmur3Words2(keyHash, h, RENDEZVOUS_SCORE_SEED);
      // Only candidates ranked strictly after the previous pick (score desc, hash asc, index asc).
      if (prevIdx >= 0) {
        const after = s < prevScore || (s === prevScore && (h > prevHash || (h === prevHash && i > prevIdx)));
        if (!after) continue;
      }
      if (best < 0 || s > bestScore || (s === bestScore && (h < bestHash || (h === bestHash && i < best)))) {
        best = i;
        bestScore = s;
        bestHash = h;
      }
    }
    out[r] = best;
    prevScore = bestScore;
    prevHash = bestHash;
    prevIdx = best;
  }
  return k;
}
