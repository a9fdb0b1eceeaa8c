/**
 * The namespace lab itself, proven without Sluice (root only).
 *
 * Topologies built here:
 * 1. stick, 3 backends, the balancer namespace's kernel forwarding the VIPs to b1: HTTP (v4 and
 *    v6), UDP flows and long-lived echo connections from the client, checked against the backend
 *    servers' own counters.
 * 2. stick, 2 backends, ipip: true: hand-built IP-in-IP packets sent from the balancer namespace are
 *    decapsulated by the userspace decapsulator, answered by the backend's UDP server, and the
 *    answer reaches the client straight from the VIP (DSR).
 * 3. split, 2 balancers (ECMP on the router), 2 client paths: both balancers carry traffic, and
 *    the client's second path reaches the VIP.
 * Every lab must leave no sl-<runId>-* namespace behind.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, VIP4, VIP6 } from '../../scripts/lab/topology.js';
import { listNamespaces } from '../../scripts/lab/netns.js';
import { repoRoot } from '../../scripts/lib/repo.js';
import type { HttpReport, LongReport, UdpReport } from '../../scripts/lib/reports.js';

const root = process.getuid?.() === 0;
const inCi = process.env.CI === 'true';

if (!root && inCi) {
  describe('lab e2e', () => {
    it('must run as root in CI (network namespaces)', () => {
      throw new Error('test/e2e/lab.test.ts needs root to build network namespaces; CI must run it as root');
    });
  });
}

const ROOT = repoRoot(import.meta.url);

/** Compile when a lab script (any .ts under scripts/) is missing from dist/ or older than its source. */
function ensureBuilt(): void {
  const sources = readdirSync(join(ROOT, 'scripts'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  const out = (src: string): string => join(ROOT, 'dist', 'scripts', src.replace(/\.ts$/, '.js'));
  const stale = sources.some((src) => !existsSync(out(src)) || statSync(out(src)).mtimeMs < statSync(join(ROOT, 'scripts', src)).mtimeMs);
  if (!stale) return;
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'pipe' });
  } catch {
    // tsc still emits when other files have type errors; check what we need below.
  }
  for (const n of ['backend-server', 'load', 'lab-cli']) {
    const js = join(ROOT, 'dist', 'scripts', `${n}.js`);
    if (!existsSync(js)) throw new Error(`build did not produce ${js}`);
  }
}

async function labNamespaces(runId: string): Promise<string[]> {
  return (await listNamespaces()).filter((n) => n.startsWith(`sl-${runId}-`));
}

/** Builds an IPv4 or IPv6 UDP datagram and sends it IP-in-IP (raw socket) to a backend. */
const SEND_IPIP = String.raw`
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def udp6(src, dst, sport, dport, payload):
    s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    ln = 8 + len(payload)
    c = csum(s6 + d6 + struct.pack('!IxxxB', ln, 17) + struct.pack('!HHHH', sport, dport, ln, 0) + payload) or 0xffff
    return struct.pack('!IHBB', 6 << 28, ln, 17, 64) + s6 + d6 + struct.pack('!HHHH', sport, dport, ln, c) + payload
def udp4(src, dst, sport, dport, payload):
    u = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(u), 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + u
kind, outer_dst, src, vip, sport, dport = sys.argv[1:7]
fam = socket.AF_INET if kind in ('4in4', '6in4') else socket.AF_INET6
proto = 4 if kind in ('4in4', '4in6') else 41
inner = (udp4 if kind in ('4in4', '4in6') else udp6)(src, vip, int(sport), int(dport), b'ipip-probe')
socket.socket(fam, socket.SOCK_RAW, proto).sendto(inner, (outer_dst, 0))
`;

/** Waits for one UDP datagram on addr:port and prints "payload|from-address|from-port". */
const RECV_ONE = String.raw`
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(5)
data, addr = s.recvfrom(2048)
print('%s|%s|%d' % (data.decode(), addr[0], addr[1]), flush=True)
`;

describe.skipIf(!root)('lab (namespaces, root)', () => {
  beforeAll(() => ensureBuilt());

  it('stick lab, 3 backends, kernel forwarding to b1: http v4/v6, udp flows and long connections all reach b1', async () => {
    const lab = await Lab.create({ backends: 3 });
    const runId = lab.runId;
    try {
      const d = lab.describe();
      expect(d.namespaces.backends).toEqual([`sl-${runId}-b1`, `sl-${runId}-b2`, `sl-${runId}-b3`]);
      expect(d.balancers[0]?.interface).toBe('sl-lb0');
      expect(d.balancers[0]?.ns).toBe(`sl-${runId}-lb`);
      expect(d.backends.map((b) => b.ipv4)).toEqual(['10.99.0.11', '10.99.0.12', '10.99.0.13']);
      expect(d.backends.map((b) => b.ipv6)).toEqual(['fd00:99::11', 'fd00:99::12', 'fd00:99::13']);
      for (const b of d.backends) expect(b.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      expect((await labNamespaces(runId)).sort()).toEqual([...d.namespaces.backends, ...d.namespaces.balancers, d.namespaces.client, d.namespaces.router, d.namespaces.switch].sort());

      // The balancer namespace must not forward until asked (Sluice refuses to start otherwise).
      expect((await lab.exec('lb', ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('0');
      // Every veth keeps the kernel's default offloads, the balancer's own included (the README asks
      // operators to change nothing there for the ring engine). TSO on implies checksum offload on.
      for (const [role, ifname] of [['lb', 'sl-lb0'], ['client', d.client.interfaces[0].name], ['b1', d.backends[0].interface]] as const) {
        const features = (await lab.exec(role, ['ethtool', '-k', ifname])).stdout;
        expect(features, `${role} ${ifname}`).toMatch(/^tcp-segmentation-offload: on/m);
        expect(features, `${role} ${ifname}`).toMatch(/^generic-segmentation-offload: on/m);
      }

      const cfg = JSON.parse(readFileSync(lab.configFor(), 'utf8')) as {
        interface: string;
        egressInterface: string;
        services: { name: string; vip: string; port: number; protocol: string; forwarding: string; backends: { address: string; weight: number }[] }[];
        admin: { socket: string };
      };
      expect(cfg.interface).toBe('sl-lb0');
      expect(cfg.egressInterface).toBe('sl-lb0');
      expect(cfg.admin.socket).toBe(`/tmp/sl-${runId}/admin.sock`);
      expect(cfg.services.map((s) => `${s.name} ${s.vip} ${s.protocol}/${s.port} ${s.forwarding}`)).toEqual([
        `web ${VIP4} tcp/80 dsr-l2`,
        `dns ${VIP4} udp/53 dsr-l2`,
        `web6 ${VIP6} tcp/80 dsr-l2`,
        `echo ${VIP4} tcp/7 dsr-l2`,
      ]);
      expect(cfg.services[2]?.backends.map((b) => b.address)).toEqual(['fd00:99::11', 'fd00:99::12', 'fd00:99::13']);

      await lab.kernelForwarding(true, 1);
      await lab.resetStats();

      const http = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '50', '--concurrency', '10', '--duration', '20', '--backends', '1'])) as HttpReport;
      expect(http.mode).toBe('http');
      expect(http.ok).toBe(50);
      expect(http.failed).toBe(0);
      expect(http.backends['b1']?.count).toBe(50);
      expect(http.latencyMs.count).toBe(50);

      const udp = (await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '20', '--per-flow', '5', '--duration', '20'])) as UdpReport;
      expect(udp.sent).toBe(100);
      expect(udp.replies).toBe(100);
      expect(udp.flowsComplete).toBe(20);
      expect(udp.flowsSplit).toBe(0);
      expect(udp.backends['b1']?.count).toBe(20);

      const long = (await lab.runLoad(['--mode', 'long', '--target', `${VIP4}:7`, '--connections', '10', '--duration', '3', '--interval', '100'])) as LongReport;
      expect(long.established).toBe(10);
      expect(long.broken).toBe(0);
      expect(long.stalled).toBe(0);
      expect(long.messagesOk).toBe(long.messagesSent);
      expect(long.messagesSent).toBeGreaterThanOrEqual(10 * 20);
      expect(long.perConnection.every((c) => c.backend === 'b1')).toBe(true);

      const http6 = (await lab.runLoad(['--mode', 'http', '--target', `[${VIP6}]:80`, '--count', '50', '--concurrency', '10', '--duration', '20'])) as HttpReport;
      expect(http6.ok).toBe(50);
      expect(http6.backends['b1']?.count).toBe(50);

      const b1 = await lab.backendStats(1);
      expect(b1.name).toBe('b1');
      expect(b1.http.requests).toBe(100);
      expect(b1.tcp.byPort['80']?.connections).toBe(100);
      expect(b1.tcp.byPort['7']?.connections).toBe(10);
      expect(b1.udp.datagrams).toBe(100);
      expect(Object.keys(b1.udp.flows)).toHaveLength(20);
      expect(Object.values(b1.udp.flows).every((n) => n === 5)).toBe(true);
      expect(Object.keys(b1.udp.flows).every((k) => k.startsWith('10.99.1.2:'))).toBe(true);
      expect(b1.tcp.recent.some((c) => c.client.startsWith('[fd00:99:1::2]:'))).toBe(true);
      for (const i of [2, 3]) {
        const s = await lab.backendStats(i);
        expect(s.tcp.connections + s.udp.datagrams).toBe(0);
      }

      // A stopped server is really gone, and comes back.
      await lab.stopServer(2);
      expect(lab.backend(2).server).toBe(false);
      await lab.startServer(2);
      expect((await lab.backendStats(2)).name).toBe('b2');
    } finally {
      await lab.destroy();
    }
    expect(await labNamespaces(runId)).toEqual([]);
    expect(existsSync(`/tmp/sl-${runId}`)).toBe(false);
  });

  it('ipip lab: the userspace decapsulator delivers IPIP (4in4) and IPv6-in-IPv6 to the VIP, replies go straight to the client', async () => {
    const lab = await Lab.create({ backends: 2, ipip: true });
    const runId = lab.runId;
    try {
      expect(lab.describe().backends.every((b) => b.decap && b.server)).toBe(true);
      const sender = join(lab.runDir, 'send-ipip.py');
      writeFileSync(sender, SEND_IPIP);

      // IPv4 in IPv4 to b1; the reply must reach a socket in the client, from VIP:53.
      const recv4 = lab.spawn('client', ['python3', '-c', RECV_ONE, '10.99.1.2', '40001'], { pipeStdout: true });
      let got4 = '';
      recv4.stdout?.on('data', (c: Buffer) => (got4 += c.toString()));
      const done4 = new Promise((r) => recv4.on('exit', r));
      await new Promise((r) => setTimeout(r, 300)); // let the receiver bind
      await lab.exec('lb', ['python3', sender, '4in4', '10.99.0.11', '10.99.1.2', VIP4, '40001', '53']);
      await done4;
      expect(got4.trim()).toBe(`b1 1|${VIP4}|53`);

      // IPv6 in IPv6 to b2.
      const recv6 = lab.spawn('client', ['python3', '-c', RECV_ONE, 'fd00:99:1::2', '40002'], { pipeStdout: true });
      let got6 = '';
      recv6.stdout?.on('data', (c: Buffer) => (got6 += c.toString()));
      const done6 = new Promise((r) => recv6.on('exit', r));
      await new Promise((r) => setTimeout(r, 300));
      await lab.exec('lb', ['python3', sender, '6in6', 'fd00:99::12', 'fd00:99:1::2', VIP6, '40002', '53']);
      await done6;
      expect(got6.trim()).toBe(`b2 1|${VIP6}|53`);

      const s1 = await lab.backendStats(1);
      expect(s1.udp.flows).toEqual({ '10.99.1.2:40001': 1 });
      const s2 = await lab.backendStats(2);
      expect(s2.udp.flows).toEqual({ '[fd00:99:1::2]:40002': 1 });

      const d1 = await lab.decapStats(1);
      expect(d1['decap4in4']).toBe(1);
      expect(d1['bad']).toBe(0);
      const d2 = await lab.decapStats(2);
      expect(d2['decap6in6']).toBe(1);

      const cfg = JSON.parse(readFileSync(lab.configFor(), 'utf8')) as { services: { forwarding: string }[] };
      expect(cfg.services.every((s) => s.forwarding === 'ipip')).toBe(true);
    } finally {
      await lab.destroy();
    }
    expect(await labNamespaces(runId)).toEqual([]);
  });

  it('split lab, 2 balancers behind an ECMP route, 2 client paths: both balancers carry flows', async () => {
    const lab = await Lab.create({ backends: 1, mode: 'split', balancers: 2, clientPaths: 2 });
    const runId = lab.runId;
    try {
      const d = lab.describe();
      expect(d.balancers.map((b) => [b.ns, b.interface, b.egressInterface])).toEqual([
        [`sl-${runId}-lb1`, 'sl-lbi', 'sl-lb0'],
        [`sl-${runId}-lb2`, 'sl-lbi', 'sl-lb0'],
      ]);
      const cfg2 = JSON.parse(readFileSync(lab.configFor(undefined, { balancer: 2 }), 'utf8')) as { interface: string; admin: { socket: string } };
      expect(cfg2.interface).toBe('sl-lbi');
      expect(cfg2.admin.socket).toBe(`/tmp/sl-${runId}/admin-lb2.sock`);
      const route = (await lab.exec('router', ['ip', 'route', 'show', '198.51.100.0/24'])).stdout;
      expect(route).toMatch(/nexthop via 10\.99\.2\.2/);
      expect(route).toMatch(/nexthop via 10\.99\.3\.2/);

      await lab.kernelForwarding(true, 1);
      const rx = async (k: number): Promise<number> => {
        const { stdout } = await lab.exec(`lb${k}`, ['cat', '/sys/class/net/sl-lbi/statistics/rx_packets']);
        return Number(stdout.trim());
      };
      const before = [await rx(1), await rx(2)];
      const udp = (await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '64', '--per-flow', '3', '--duration', '20'])) as UdpReport;
      expect(udp.replies).toBe(192);
      const delta = [(await rx(1)) - (before[0] ?? 0), (await rx(2)) - (before[1] ?? 0)];
      // 64 flows hashed on L4 over 2 next hops: each gets a fair part (binomial, far from 0).
      expect(delta[0]).toBeGreaterThan(30);
      expect(delta[1]).toBeGreaterThan(30);

      const http2 = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '10', '--bind', '10.99.9.2', '--duration', '20'])) as HttpReport;
      expect(http2.ok).toBe(10);
      expect((await lab.backendStats(1)).tcp.recent.filter((c) => c.client.startsWith('10.99.9.2:'))).toHaveLength(10);
    } finally {
      await lab.destroy();
    }
    expect(await labNamespaces(runId)).toEqual([]);
  });
});
