/**
 * Who may do what on the admin socket. The socket file's mode keeps strangers from connecting,
 * but a mode is easy to loosen by accident (a umask, a chmod); the decision here uses the
 * caller's kernel credentials. Root and members of the admin group may change state (drain,
 * undrain, weight, reload, any non-GET request); read-only requests follow admin.readers.
 */
import { hostAddon } from './host-addon.js';
import type { PeerCredentials } from './peer-credentials.js';

export type AdminReaders = 'anyone' | 'group';

export interface AdminAccessPolicy {
  /** The admin group's gid. */
  gid: number;
  /** For messages: the group as configured (name or number). */
  groupName: string;
  /** 'group': reads need root or the group too; 'anyone': whoever can open the socket may read. */
  readers: AdminReaders;
}

export type AccessDecision = { allowed: true } | { allowed: false; error: string };

/** GET and HEAD read; every other method may change state. */
export function isMutating(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD';
}

export function decideAdminAccess(peer: PeerCredentials | null, policy: AdminAccessPolicy, method: string, path: string): AccessDecision {
  const what = `${method} ${path}`;
  if (!peer) return { allowed: false, error: `${what} refused: the caller's credentials are unknown` };
  if (peer.uid === 0) return { allowed: true };
  const member = peer.gid === policy.gid || peer.groups.includes(policy.gid);
  if (member) return { allowed: true };
  if (!isMutating(method) && policy.readers === 'anyone') return { allowed: true };
  const needs = isMutating(method) ? 'changes state' : 'is limited by admin.readers "group"';
  return {
    allowed: false,
    error: `permission denied: ${what} ${needs}; allowed to root and members of group ${policy.groupName} (gid ${policy.gid}); you are uid ${peer.uid} gid ${peer.gid}`,
  };
}

/** admin.group (a name or a number) -> gid; absent: the process's own effective group. */
export function resolveAdminGroup(group: string | undefined): { gid: number; name: string } {
  if (group === undefined) {
    const gid = process.getegid?.() ?? 0;
    return { gid, name: String(gid) };
  }
  if (/^\d+$/.test(group)) return { gid: Number(group), name: group };
  const gid = hostAddon().groupId(group);
  if (gid === null) throw new Error(`admin.group: no group named ${JSON.stringify(group)} on this host (create it, or give a gid)`);
  return { gid, name: group };
}
