/**
 * The load tool's questions to Sluice's admin socket, against a stand-in admin API on a unix
 * socket: which backend each client endpoint's flow went to, and the service's weights.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlowTableAttribution, weightsFromAdmin } from '../../scripts/lib/balancer-admin.js';

const VIP = '198.51.100.10';
let dir = '';
let socket = '';
let server: Server;
const asked: string[] = [];
/** What /flows answers; tests change it between polls. */
let rows: Record<string, unknown>[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sl-admin-'));
  socket = join(dir, 'admin.sock');
  server = createServer((req, res) => {
    asked.push(req.url ?? '');
    const url = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (url.pathname === '/flows') return res.end(JSON.stringify({ rows, total: rows.length }));
    if (url.pathname === '/status') {
      return res.end(
        JSON.stringify({
          services: [
            { name: 'dns', vip: VIP, port: 53, protocol: 'udp', backends: [{ address: '10.0.0.11', weight: 5, status: 'serving' }] },
            {
              name: 'web',
              vip: VIP,
              port: 80,
              protocol: 'tcp',
              backends: [
                { address: '10.0.0.11', weight: 2, status: 'serving' },
                { address: '10.0.0.12', weight: 1, status: 'down' },
                { address: '10.0.0.13', weight: 1, status: 'draining' },
                { address: '10.0.0.14', weight: 3, status: 'spare-serving' },
                { address: '10.0.0.15', weight: 1, status: 'spare-standby' },
              ],
            },
          ],
        }),
      );
    }
    res.statusCode = 404;
    res.end('{}');
  });
  await new Promise<void>((r) => server.listen(socket, r));
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

const row = (client: string, clientPort: number, backend: string, port = 80, protocol = 'tcp'): Record<string, unknown> => ({ protocol, client, clientPort, vip: VIP, port, backend, service: 'web' });

describe('load --attribute flows', () => {
  it('remembers every client endpoint it saw, also after the flow left the table; filters by VIP, port and protocol', async () => {
    rows = [row('10.0.1.2', 40001, '10.0.0.11'), row('10.0.1.2', 40002, '10.0.0.12'), row('10.0.1.2', 40003, '10.0.0.13', 53, 'udp'), row('10.0.1.2', 40004, '10.0.0.13', 8080)];
    const f = new FlowTableAttribution(socket, VIP, 80, 'tcp');
    await f.start();
    rows = [row('10.0.1.2', 40005, '10.0.0.13')]; // 40001 and 40002 have closed and expired
    await f.stop();
    expect(asked.some((u) => u.startsWith(`/flows?vip=${VIP}&limit=`))).toBe(true);
    const cases: { port: number; want: string | null }[] = [
      { port: 40001, want: '10.0.0.11' },
      { port: 40002, want: '10.0.0.12' },
      { port: 40003, want: null }, // udp
      { port: 40004, want: null }, // another port
      { port: 40005, want: '10.0.0.13' },
      { port: 40006, want: null },
    ];
    for (const c of cases) expect(f.backendOf('10.0.1.2', c.port), `client port ${c.port}`).toBe(c.want);
    expect(f.backendOf('::ffff:10.0.1.2', 40001)).toBe('10.0.0.11');
  });

  it('a socket that does not answer fails the start with a clear message', async () => {
    const f = new FlowTableAttribution(join(dir, 'nothing.sock'), VIP, 80, 'tcp');
    await expect(f.start()).rejects.toThrow(/--attribute flows: the admin socket .*nothing\.sock did not answer/);
  });
});

describe('load: weights from the balancer', () => {
  it('takes the effective weight of backends taking new flows, 0 for down, draining and standby ones', async () => {
    const w = await weightsFromAdmin(socket, VIP, 80, 'tcp');
    expect(Object.fromEntries(w)).toEqual({ '10.0.0.11': 2, '10.0.0.12': 0, '10.0.0.13': 0, '10.0.0.14': 3, '10.0.0.15': 0 });
  });

  it('picks the service by protocol and port', async () => {
    expect(Object.fromEntries(await weightsFromAdmin(socket, VIP, 53, 'udp'))).toEqual({ '10.0.0.11': 5 });
  });

  it('names what is missing when no service matches', async () => {
    await expect(weightsFromAdmin(socket, VIP, 443, 'tcp')).rejects.toThrow(/no tcp service for 198\.51\.100\.10:443/);
  });
});
