/**
 * Admin access (src/observe/admin-authorization.ts, admin-socket.ts, peer-credentials.ts,
 * admin-server.ts): the decision table, the socket's mode whatever the umask, and the kernel's
 * view of the caller. Runs as any user; as root (CI) it also sets the socket's group.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { decideAdminAccess, isMutating, type AdminAccessPolicy } from '../../src/observe/admin-authorization.js';
import { listenAdminSocket, parseSocketMode } from '../../src/observe/admin-socket.js';
import { serveAdmin } from '../../src/observe/admin-server.js';
import { HttpCounters } from '../../src/observe/http-counters.js';
import { peerCredentials, type PeerCredentials } from '../../src/observe/peer-credentials.js';
import { adminRequest } from '../../src/observe/admin-client.js';

const dir = mkdtempSync(join(tmpdir(), 'sl-admin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GROUP = 4242;
const policy = (readers: 'anyone' | 'group'): AdminAccessPolicy => ({ gid: GROUP, groupName: 'sluice-ops', readers });
const peer = (uid: number, gid: number, groups: number[] = []): PeerCredentials => ({ pid: 1234, uid, gid, groups });

describe('decideAdminAccess', () => {
  const cases: { name: string; peer: PeerCredentials | null; readers: 'anyone' | 'group'; method: string; allowed: boolean }[] = [
    { name: 'root may drain', peer: peer(0, 0), readers: 'group', method: 'POST', allowed: true },
    { name: 'root may read', peer: peer(0, 0), readers: 'group', method: 'GET', allowed: true },
    { name: 'member by primary gid may drain', peer: peer(1000, GROUP), readers: 'group', method: 'POST', allowed: true },
    { name: 'member by supplementary group may drain', peer: peer(1000, 1000, [27, GROUP]), readers: 'group', method: 'POST', allowed: true },
    { name: 'member may read', peer: peer(1000, 1000, [GROUP]), readers: 'group', method: 'GET', allowed: true },
    { name: 'outsider may not drain (readers anyone)', peer: peer(1000, 1000, [27]), readers: 'anyone', method: 'POST', allowed: false },
    { name: 'outsider may not drain (readers group)', peer: peer(1000, 1000), readers: 'group', method: 'POST', allowed: false },
    { name: 'outsider may read when readers is anyone', peer: peer(1000, 1000), readers: 'anyone', method: 'GET', allowed: true },
    { name: 'outsider may not read when readers is group', peer: peer(1000, 1000), readers: 'group', method: 'GET', allowed: false },
    { name: 'outsider may not use an unknown method', peer: peer(1000, 1000), readers: 'anyone', method: 'PATCH', allowed: false },
    { name: 'unknown caller may do nothing', peer: null, readers: 'anyone', method: 'GET', allowed: false },
  ];
  it.each(cases)('$name', ({ peer: p, readers, method, allowed }) => {
    const d = decideAdminAccess(p, policy(readers), method, '/backends/drain');
    expect(d.allowed).toBe(allowed);
    if (!d.allowed) expect(d.error).toMatch(/permission denied|credentials are unknown/);
  });

  it('the refusal names the group, the rule and the caller', () => {
    const d = decideAdminAccess(peer(1000, 1000), policy('anyone'), 'POST', '/reload');
    expect(d).toEqual({
      allowed: false,
      error: 'permission denied: POST /reload changes state; allowed to root and members of group sluice-ops (gid 4242); you are uid 1000 gid 1000',
    });
  });

  it.each([
    { method: 'GET', mutating: false },
    { method: 'HEAD', mutating: false },
    { method: 'POST', mutating: true },
    { method: 'DELETE', mutating: true },
  ])('isMutating($method) = $mutating', ({ method, mutating }) => expect(isMutating(method)).toBe(mutating));
});

describe('parseSocketMode', () => {
  it.each([
    { text: '0660', want: 0o660 },
    { text: '660', want: 0o660 },
    { text: '0600', want: 0o600 },
    { text: '0666', want: 0o666 },
    { text: '0868', want: null },
    { text: '66', want: null },
    { text: '01777', want: null },
    { text: 'rw-rw----', want: null },
  ])('$text -> $want', ({ text, want }) => expect(parseSocketMode(text)).toBe(want));
});

describe('listenAdminSocket: the mode is explicit, whatever the umask', () => {
  for (const umask of [0o000, 0o077, 0o022]) {
    it(`umask ${umask.toString(8).padStart(3, '0')}: socket mode 0660`, async () => {
      const path = join(dir, `u${umask}`, 'nested', 'admin.sock');
      const server = createHttpServer();
      const before = process.umask(umask);
      try {
        await listenAdminSocket(server, path, 0o660, process.getegid?.() ?? 0);
      } finally {
        process.umask(before);
      }
      const mode = statSync(path).mode & 0o777;
      await new Promise<void>((r) => server.close(() => r()));
      console.log(`umask ${umask.toString(8).padStart(3, '0')}: admin socket mode ${mode.toString(8).padStart(4, '0')}`);
      expect(mode).toBe(0o660);
      // The directories it had to create are traversable whatever the umask: the socket's mode decides.
      expect(statSync(join(dir, `u${umask}`, 'nested')).mode & 0o777).toBe(0o755);
      expect(statSync(join(dir, `u${umask}`)).mode & 0o777).toBe(0o755);
      // ... unlike a plain listen, whose mode follows the umask (the 0.1 behaviour).
      const plain = createHttpServer();
      const p2 = join(dir, `plain${umask}.sock`);
      const b2 = process.umask(umask);
      await new Promise<void>((r) => plain.listen(p2, () => r()));
      process.umask(b2);
      const plainMode = statSync(p2).mode & 0o777;
      await new Promise<void>((r) => plain.close(() => r()));
      console.log(`umask ${umask.toString(8).padStart(3, '0')}: plain listen mode ${plainMode.toString(8).padStart(4, '0')}`);
      expect(plainMode).toBe(0o777 & ~umask);
    });
  }

  it('root: the socket gets the configured group', async () => {
    if (process.getuid?.() !== 0) return; // chown to another group needs root (CI runs as root)
    const path = join(dir, 'group.sock');
    const server = createHttpServer();
    await listenAdminSocket(server, path, 0o660, GROUP);
    const st = statSync(path);
    await new Promise<void>((r) => server.close(() => r()));
    expect(st.gid).toBe(GROUP);
    expect(st.mode & 0o777).toBe(0o660);
  });

  it('refuses to replace a file that is not a socket', async () => {
    const path = join(dir, 'not-a-socket');
    writeFileSync(path, 'precious');
    await expect(listenAdminSocket(createHttpServer(), path, 0o660, 0)).rejects.toThrow(/not a socket; refusing to replace it/);
  });
});

describe('peerCredentials: the kernel names the caller', () => {
  it('a connection from this process shows its pid, uid and gid', async () => {
    const path = join(dir, 'peer.sock');
    const seen = new Promise<PeerCredentials | null>((resolve) => {
      const server = createServer((s: Socket) => {
        resolve(peerCredentials(s));
        s.destroy();
        server.close();
      }).listen(path, () => {
        connect(path).on('error', () => undefined);
      });
    });
    const creds = await seen;
    expect(creds).not.toBeNull();
    expect(creds?.pid).toBe(process.pid);
    expect(creds?.uid).toBe(process.getuid?.());
    expect(creds?.gid).toBe(process.getegid?.());
  });
});

describe('serveAdmin: authorization in front of the endpoints', () => {
  it('root is served; a 403 is a JSON error the CLI prints', async () => {
    const path = join(dir, 'serve.sock');
    const counters = new HttpCounters(new Registry());
    let calls = 0;
    const server = await serveAdmin({
      admin: () => ({ socket: path, socketMode: '0600', group: String(GROUP), readers: 'group' }),
      log: pino({ level: 'silent' }),
      counters,
      handler: (_req, _url, res) => {
        calls++;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}\n');
      },
    });
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const r = await adminRequest(path, 'POST', '/reload');
      if (process.getuid?.() === 0) {
        expect(r).toEqual({ status: 200, body: { ok: true } });
        expect(calls).toBe(1);
      } else {
        expect(r.status).toBe(403);
        expect(calls).toBe(0);
      }
      const bad = await adminRequest(path, 'DELETE', '/reload');
      expect(bad.status).toBe(405);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
