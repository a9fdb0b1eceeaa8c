/**
 * The admin API's unix socket: created with an explicit mode and group whatever the umask of
 * whoever started Sluice, and only by the instance holding the socket's lock
 * (src/runtime/instance-lock.ts), so a stale socket is replaced but a live one never is.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:http';
import { dirname } from 'node:path';

export const DEFAULT_ADMIN_SOCKET_MODE = 0o660;

/** "0660" / "660" -> 0o660; null when not an octal permission mode. */
export function parseSocketMode(text: string): number | null {
  return /^0?[0-7]{3}$/.test(text) ? parseInt(text, 8) : null;
}

/** Directory mode for directories Sluice creates on the way to its socket: traversable, so the socket's own mode decides. */
const SOCKET_DIR_MODE = 0o755;

/**
 * Create the socket's directory (and missing parents) with SOCKET_DIR_MODE whatever the umask;
 * a directory that already exists is left as the operator made it (e.g. systemd's 0750).
 */
export function makeSocketDirectory(dir: string): void {
  const first = mkdirSync(dir, { recursive: true, mode: SOCKET_DIR_MODE });
  if (first === undefined) return;
  // mkdir's mode is masked by the umask: set it on each directory this call created.
  for (let d = dir; d.length >= first.length; d = dirname(d)) {
    chmodSync(d, SOCKET_DIR_MODE);
    if (d === first) break;
  }
}

/**
 * Listen on `path` with `mode` and group `gid`. The caller must hold the socket's lock: any file
 * already there is a socket left by a dead instance. libuv unlinks the path when the server
 * closes, so only the lock holder ever removes it.
 */
export function listenAdminSocket(server: Server, path: string, mode: number, gid: number): Promise<void> {
  makeSocketDirectory(dirname(path));
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(path);
  } catch {
    existing = undefined;
  }
  if (existing) {
    if (!existing.isSocket()) return Promise.reject(new Error(`${path} exists and is not a socket; refusing to replace it`));
    unlinkSync(path);
  }
  return new Promise((resolve, reject) => {
    const fail = (e: Error): void => reject(e);
    server.once('error', fail);
    // bind() happens inside listen(): a tight umask for that call means the socket is never
    // reachable by others between bind and the chmod below.
    const umask = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', fail);
        try {
          if (gid !== (process.getegid?.() ?? gid)) chownSync(path, -1, gid);
          chmodSync(path, mode);
          resolve();
        } catch (e) {
          server.close();
          reject(new Error(`cannot set mode ${mode.toString(8).padStart(4, '0')} and gid ${gid} on ${path}: ${(e as Error).message}`));
        }
      });
    } finally {
      process.umask(umask);
    }
  });
}
