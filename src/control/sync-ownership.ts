/**
 * Ownership of flow state: the owners of a key are the top `replicas` (default 2: the owner and
 * one replica) live instances by rendezvous hashing (src/hash/rendezvous.ts) of
 * murmur3(key, OWNER_KEY_SEED) over the sorted live set. Adding or losing one instance keeps at
 * least one of a key's two previous holders among its two new owners, so a query to both owners
 * survives one change.
 */
import { murmur3_32 } from '../hash/murmur3.js';
import { rendezvousOwners } from '../hash/rendezvous.js';

/** Seed of the key hash for owner selection. Fixed: changing it moves every owner. */
export const OWNER_KEY_SEED = 0x0c0ffee5;
export const DEFAULT_REPLICAS = 2;

/** murmur3 of the key bytes under OWNER_KEY_SEED: the rendezvous key hash. */
export function ownerKeyHash(key: Uint8Array): number {
  return murmur3_32(key, 0, key.length, OWNER_KEY_SEED);
}

/** The owners of a key among instances (ids and their hashInstanceId values), best first. */
export function ownersOf(key: Uint8Array, ids: readonly string[], hashes: Uint32Array, replicas = DEFAULT_REPLICAS): string[] {
  const out = new Int32Array(replicas);
  const k = rendezvousOwners(ownerKeyHash(key), hashes, replicas, out);
  const owners: string[] = new Array<string>(k);
  for (let i = 0; i < k; i++) owners[i] = ids[out[i]];
  return owners;
}
