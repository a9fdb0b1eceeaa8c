/**
 * The host functions of Sluice's addon (native/sluice_host.c) that the control process uses:
 * peer credentials of a unix socket, group lookup, file locks, malloc settings. Loaded lazily from the same
 * .node file as the capture engine; a missing addon is a clear error at first use.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ADDON_BUILD_COMMAND, addonPath } from '../dataplane/capture-batch.js';

export interface PeerCredentials {
  pid: number;
  uid: number;
  /** Effective gid of the peer when it connected. */
  gid: number;
  /** Supplementary groups (SO_PEERGROUPS); empty on kernels before 4.13. */
  groups: readonly number[];
}

export interface HostAddon {
  peerCredentials(fd: number): PeerCredentials;
  groupId(name: string): number | null;
  /** fd >= 0 holding an exclusive flock, or -errno (-EWOULDBLOCK: someone else holds it). */
  lockFile(path: string): number;
  /** A new fd on the same AF_PACKET socket as `fd`, or -errno (-EBADF: not a packet socket). */
  holdPacketSocket(fd: number): number;
  /** mallopt(M_MMAP_THRESHOLD) and mallopt(M_ARENA_MAX); true when glibc took both. */
  tuneMalloc(mmapThreshold: number, arenaMax: number): boolean;
}

let loaded: HostAddon | null = null;

export function hostAddon(): HostAddon {
  if (loaded) return loaded;
  const path = addonPath();
  if (!existsSync(path)) throw new Error(`the Sluice addon is not built (${path} is missing): run \`${ADDON_BUILD_COMMAND}\``);
  const mod = createRequire(import.meta.url)(path) as Partial<HostAddon>;
  if (typeof mod.peerCredentials !== 'function' || typeof mod.groupId !== 'function' || typeof mod.lockFile !== 'function' || typeof mod.tuneMalloc !== 'function' || typeof mod.holdPacketSocket !== 'function') {
    throw new Error(`the Sluice addon at ${path} is older than this build (no peerCredentials/lockFile/tuneMalloc/holdPacketSocket): run \`${ADDON_BUILD_COMMAND}\``);
  }
  loaded = mod as HostAddon;
  return loaded;
}
