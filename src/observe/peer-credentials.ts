/**
 * Who is on the other end of a unix-socket connection, from the kernel (SO_PEERCRED and
 * SO_PEERGROUPS, taken when the peer connected), not from anything the peer says.
 */
import type { Socket } from 'node:net';
import { hostAddon, type PeerCredentials } from './host-addon.js';

export type { PeerCredentials };

/** Node keeps the descriptor on the socket's libuv handle; it has no public accessor. */
interface HandleWithFd {
  _handle?: { fd?: number } | null;
}

const cache = new WeakMap<Socket, PeerCredentials | null>();

/** The peer of an accepted unix socket, or null when the kernel cannot say (closed, not unix). */
export function peerCredentials(socket: Socket): PeerCredentials | null {
  if (cache.has(socket)) return cache.get(socket) ?? null;
  const fd = (socket as unknown as HandleWithFd)._handle?.fd;
  let creds: PeerCredentials | null = null;
  if (typeof fd === 'number' && fd >= 0) {
    try {
      creds = hostAddon().peerCredentials(fd);
    } catch {
      creds = null;
    }
  }
  // Credentials are fixed at connect time: one lookup per connection, not per request.
  cache.set(socket, creds);
  return creds;
}
