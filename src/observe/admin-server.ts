/**
 * The admin API server: the hardened HTTP server (http.ts) on a unix socket created with an
 * explicit mode and group (admin-socket.ts), with every request authorized by the caller's
 * kernel credentials (admin-authorization.ts) before it reaches an endpoint.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { AdminConfig } from '../config/types.js';
import { decideAdminAccess, isMutating, resolveAdminGroup } from './admin-authorization.js';
import { DEFAULT_ADMIN_SOCKET_MODE, listenAdminSocket, parseSocketMode } from './admin-socket.js';
import { hardenedServer, sendJson, type Handler, type HttpLimits } from './http.js';
import type { HttpCounters } from './http-counters.js';
import type { Logger } from './log.js';
import { peerCredentials } from './peer-credentials.js';

export const ADMIN_METHODS = ['GET', 'POST'] as const;

export interface AdminServerOptions {
  /** The admin section in force; read per request so admin.readers follows a reload. */
  admin: () => AdminConfig;
  handler: Handler;
  log: Logger;
  counters: HttpCounters;
  limits?: Partial<HttpLimits>;
}

/** Create the admin server and listen on admin.socket. The caller holds the socket's lock. */
export async function serveAdmin(opts: AdminServerOptions): Promise<Server> {
  const first = opts.admin();
  const mode = first.socketMode === undefined ? DEFAULT_ADMIN_SOCKET_MODE : parseSocketMode(first.socketMode);
  if (mode === null) throw new Error(`admin.socketMode ${JSON.stringify(first.socketMode)} is not an octal mode such as "0660"`);
  const group = resolveAdminGroup(first.group);
  const onReject = opts.counters.onReject('admin');
  const server = hardenedServer({
    listener: 'admin',
    methods: ADMIN_METHODS,
    log: opts.log,
    onReject,
    limits: opts.limits,
    handler: (req, url, res) => {
      const method = req.method ?? '';
      const peer = peerCredentials(req.socket as Socket);
      const decision = decideAdminAccess(peer, { gid: group.gid, groupName: group.name, readers: opts.admin().readers ?? 'group' }, method, url.pathname);
      if (!decision.allowed) {
        onReject('forbidden');
        opts.counters.adminDenied.inc({ access: isMutating(method) ? 'write' : 'read' });
        opts.log.warn({ event: 'admin_denied', method, path: url.pathname, uid: peer?.uid ?? null, pid: peer?.pid ?? null }, 'admin request refused');
        return sendJson(res, 403, { error: decision.error });
      }
      return opts.handler(req, url, res);
    },
  });
  await listenAdminSocket(server, first.socket, mode, group.gid);
  return server;
}
