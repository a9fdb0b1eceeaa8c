/**
 * One Sluice per capture interface and per admin socket.
 *
 * Two instances capturing on one interface both forward every SYN, and an instance that
 * deletes another's admin socket leaves it without a CLI. Before capturing or listening, an
 * instance claims:
 *   - its capture interface: an abstract unix socket "@sluice/interface/<name>". Abstract names
 *     live in the network namespace, as interface names do, and vanish with their holder, so a
 *     dead instance never blocks a restart;
 *   - the network namespace ("the host"), unless safety.allowOtherInstances is true: the socket
 *     "@sluice/namespace". Instances that allow others probe it and refuse to start beside an
 *     instance that wants the host to itself; one that wants the host alone refuses if any other
 *     instance's interface claim exists (/proc/net/unix lists them);
 *   - its admin socket path: flock on "<socket>.lock" beside it (a path is a filesystem thing,
 *     not a namespace thing). Only the holder may remove or create the socket. The lock file
 *     stays; the kernel releases the flock when the holder exits, however it exits.
 * The holder's pid comes from the kernel (SO_PEERCRED of a connection to its abstract socket),
 * or from the pid written in the lock file.
 */
import { closeSync, ftruncateSync, readFileSync, writeSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { constants } from 'node:os';
import { dirname } from 'node:path';
import { makeSocketDirectory } from '../observe/admin-socket.js';
import { hostAddon } from '../observe/host-addon.js';
import { peerCredentials } from '../observe/peer-credentials.js';
import { StartupError } from './startup-error.js';

const EWOULDBLOCK = 11;
const PROBE_TIMEOUT_MS = 1_000;
const ABSTRACT_PREFIX = 'sluice/';

/** Another instance holds what this one needs; the CLI exits 2 with the message. */
export class InstanceConflictError extends Error {
  constructor(
    message: string,
    readonly holderPid: number | null,
  ) {
    super(message);
  }
}

export interface InstanceClaimOptions {
  /** Capture interface. */
  interface: string;
  /** Admin socket path. */
  adminSocket: string;
  /** safety.allowOtherInstances: other instances may run in this namespace on other interfaces. */
  allowOthers: boolean;
  /** Name prefix of the abstract sockets; tests use their own so they cannot meet a real Sluice. */
  abstractPrefix?: string;
}

function abstractPath(name: string): string {
  return `\0${name}`;
}

/** Bind an abstract socket; false when the name is taken. */
function bindAbstract(name: string): Promise<Server | null> {
  return new Promise((resolve, reject) => {
    // Connections are only probes for the holder's pid: close them at once.
    const server = createServer((s) => s.destroy());
    server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(null) : reject(e)));
    server.listen({ path: abstractPath(name), exclusive: true }, () => {
      server.unref();
      resolve(server);
    });
  });
}

/** The pid listening on an abstract name, or null when nobody is (the holder just died). */
function holderOf(name: string): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = createConnection({ path: abstractPath(name) });
    const done = (pid: number | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(pid);
    };
    const timer = setTimeout(() => done(null), PROBE_TIMEOUT_MS);
    socket.once('connect', () => done(peerCredentials(socket)?.pid ?? -1));
    socket.once('error', () => done(null));
  });
}

/** Abstract names in this network namespace that start with `prefix` (from /proc/net/unix). */
function abstractNamesWithPrefix(prefix: string): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return [];
  }
  const out = new Set<string>();
  const marker = `@${prefix}`;
  for (const line of text.split('\n')) {
    const i = line.indexOf(marker);
    // Node binds abstract names padded with NULs to the full sun_path; the kernel shows them as '@'.
    if (i >= 0) out.add(line.slice(i + 1).trim().replace(/@+$/, ''));
  }
  return [...out];
}

function pidText(pid: number | null): string {
  return pid === null || pid < 0 ? 'pid unknown' : `pid ${pid}`;
}

/** The claims of one running instance; release() gives them back (exit does too). */
export class InstanceLock {
  readonly #servers: Server[];
  #lockFd: number | null;
  readonly lockPath: string;

  private constructor(servers: Server[], lockFd: number, lockPath: string) {
    this.#servers = servers;
    this.#lockFd = lockFd;
    this.lockPath = lockPath;
  }

  /** Claim interface, namespace (unless allowOthers) and admin socket, or throw InstanceConflictError. */
  static async claim(opts: InstanceClaimOptions): Promise<InstanceLock> {
    const prefix = opts.abstractPrefix ?? ABSTRACT_PREFIX;
    const ifaceName = `${prefix}interface/${opts.interface}`;
    const nsName = `${prefix}namespace`;
    const servers: Server[] = [];
    const undo = (): void => {
      for (const s of servers) s.close();
    };
    try {
      servers.push(await InstanceLock.#claimAbstract(ifaceName, (pid) => `another Sluice instance (${pidText(pid)}) already captures on interface ${opts.interface}; stop it first`));
      if (opts.allowOthers) {
        const pid = await holderOf(nsName);
        if (pid !== null) {
          throw new InstanceConflictError(
            `another Sluice instance (${pidText(pid)}) runs in this network namespace as the only one (its safety.allowOtherInstances is false); set it to true in both configs to run one instance per interface`,
            pid,
          );
        }
      } else {
        servers.push(
          await InstanceLock.#claimAbstract(nsName, (pid) => `another Sluice instance (${pidText(pid)}) runs in this network namespace; to run one instance per interface on purpose, set safety.allowOtherInstances: true in each config`),
        );
        for (const other of abstractNamesWithPrefix(`${prefix}interface/`)) {
          if (other === ifaceName) continue;
          const pid = await holderOf(other);
          if (pid === null) continue;
          throw new InstanceConflictError(
            `another Sluice instance (${pidText(pid)}) captures on interface ${other.slice(`${prefix}interface/`.length)} in this network namespace; to run one instance per interface on purpose, set safety.allowOtherInstances: true in each config`,
            pid,
          );
        }
      }
      const { fd, path } = InstanceLock.#lockSocketPath(opts.adminSocket);
      return new InstanceLock(servers, fd, path);
    } catch (e) {
      undo();
      throw e;
    }
  }

  static async #claimAbstract(name: string, conflict: (pid: number | null) => string): Promise<Server> {
    // Twice: a holder that died between our bind and our probe has freed the name.
    for (let attempt = 0; attempt < 2; attempt++) {
      const server = await bindAbstract(name);
      if (server) return server;
      const pid = await holderOf(name);
      if (pid !== null) throw new InstanceConflictError(conflict(pid), pid);
    }
    throw new InstanceConflictError(conflict(null), null);
  }

  static #lockSocketPath(socket: string): { fd: number; path: string } {
    const path = `${socket}.lock`;
    makeSocketDirectory(dirname(path));
    const fd = hostAddon().lockFile(path);
    if (fd === -EWOULDBLOCK) {
      let pid: number | null = null;
      try {
        const n = Number(readFileSync(path, 'utf8').trim());
        pid = Number.isInteger(n) && n > 0 ? n : null;
      } catch {
        pid = null;
      }
      throw new InstanceConflictError(`another Sluice instance (${pidText(pid)}) serves the admin socket ${socket} (it holds ${path}); give this instance its own admin.socket`, pid);
    }
    if (fd < 0) {
      const code = Object.entries(constants.errno).find(([, v]) => v === -fd)?.[0] ?? `errno ${-fd}`;
      throw new Error(`cannot lock ${path}: ${code}`);
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    return { fd, path };
  }

  release(): void {
    for (const s of this.#servers) s.close();
    this.#servers.length = 0;
    if (this.#lockFd !== null) {
      closeSync(this.#lockFd);
      this.#lockFd = null;
    }
  }
}

/**
 * The claim as a part of the control process (startable.ts): start() claims, or fails start-up
 * with exit 2 naming the holder; stop() releases after every other part has stopped.
 */
export class InstanceClaim {
  readonly name = 'instance lock';
  readonly #opts: InstanceClaimOptions;
  #lock: InstanceLock | null = null;

  constructor(opts: InstanceClaimOptions) {
    this.#opts = opts;
  }

  async start(): Promise<void> {
    this.#lock = await InstanceLock.claim(this.#opts).catch((e: Error) => {
      throw new StartupError(e instanceof InstanceConflictError ? `refusing to start: ${e.message}` : `cannot claim the instance lock: ${e.message}`);
    });
  }

  stop(): void {
    this.#lock?.release();
    this.#lock = null;
  }
}
