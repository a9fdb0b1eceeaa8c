/**
 * Facts about the host the balancer runs on, read from the kernel (sysfs, /proc, `ip -j`): never
 * hard-coded. Used at start and at every reload, never per packet.
 */
import { execFile } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { parseMac } from '../packet/mac.js';

const run = promisify(execFile);

async function ipJson<T>(args: string[]): Promise<T> {
  const { stdout } = await run('ip', ['-j', ...args], { timeout: 5000 });
  return (stdout.trim() === '' ? [] : JSON.parse(stdout)) as T;
}

export interface InterfaceFacts {
  name: string;
  mac: Uint8Array;
  mtu: number;
  /** Global addresses (encapsulation sources). */
  addresses: { family: 4 | 6; address: string }[];
  /** Every address, link-local included (traffic the capture filter leaves to the kernel). */
  allAddresses: string[];
}

export async function interfaceFacts(name: string): Promise<InterfaceFacts> {
  const base = `/sys/class/net/${name}`;
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(name) || !existsSync(base)) {
    throw new Error(`interface ${JSON.stringify(name)} does not exist in this network namespace (see \`ip link\`)`);
  }
  const mac = parseMac(readFileSync(`${base}/address`, 'utf8').trim());
  const mtu = Number(readFileSync(`${base}/mtu`, 'utf8').trim());
  type AddrInfo = { addr_info?: { family: string; local: string; scope: string }[] };
  const info = await ipJson<AddrInfo[]>(['addr', 'show', 'dev', name]);
  const all = info[0]?.addr_info ?? [];
  const addresses = all.filter((a) => a.scope === 'global').map((a) => ({ family: (a.family === 'inet6' ? 6 : 4) as 4 | 6, address: a.local }));
  return { name, mac, mtu, addresses, allAddresses: all.map((a) => a.local) };
}

function readSysctl(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** Every local address of this namespace (any interface). */
export async function localAddresses(): Promise<Set<string>> {
  type AddrInfo = { addr_info?: { local: string }[] };
  const info = await ipJson<AddrInfo[]>(['addr', 'show']);
  const out = new Set<string>();
  for (const i of info) for (const a of i.addr_info ?? []) out.add(a.local);
  return out;
}

export interface SafetyInput {
  interface: string;
  egressInterface: string;
  vips: string[];
  allowHostForwarding: boolean;
  allowLocalVip: boolean;
}

/**
 * Problems that would make the host handle VIP traffic alongside Sluice (duplicate or looping
 * packets). Each is a sentence saying what to change.
 */
export async function safetyProblems(s: SafetyInput): Promise<string[]> {
  const problems: string[] = [];
  if (!s.allowHostForwarding) {
    for (const ifname of new Set([s.interface, s.egressInterface])) {
      if (readSysctl(`/proc/sys/net/ipv4/conf/${ifname}/forwarding`) === '1') {
        problems.push(
          `IPv4 forwarding is on for ${ifname}: the kernel would route VIP packets too. ` +
            `Run \`sysctl -w net.ipv4.conf.${ifname}.forwarding=0\` (and net.ipv4.ip_forward=0), or set "safety": { "allowHostForwarding": true }.`,
        );
      }
      if (s.vips.some((v) => isIPv6(v)) && readSysctl(`/proc/sys/net/ipv6/conf/${ifname}/forwarding`) === '1') {
        problems.push(
          `IPv6 forwarding is on for ${ifname}: the kernel would route VIP packets too. ` +
            `Run \`sysctl -w net.ipv6.conf.${ifname}.forwarding=0\`, or set "safety": { "allowHostForwarding": true }.`,
        );
      }
    }
  }
  if (!s.allowLocalVip) {
    const local = await localAddresses();
    for (const vip of s.vips) {
      if (local.has(vip)) {
        problems.push(
          `VIP ${vip} is configured on this host: the kernel would answer VIP traffic itself. ` +
            `Remove it (\`ip addr del ${vip}/${isIPv6(vip) ? 128 : 32} dev IF\`), or set "safety": { "allowLocalVip": true }.`,
        );
      }
    }
  }
  return problems;
}

export interface NextHop {
  address: string;
  nextHop: string;
  dev: string;
  mac: Uint8Array | null;
  /** Why the MAC is missing or the route unsuitable. */
  problem: string | null;
}

type RouteInfo = { dst: string; gateway?: string; dev: string };
type NeighInfo = { dst: string; dev?: string; lladdr?: string; state?: string[] };

async function neighbourMac(nextHop: string, dev: string): Promise<Uint8Array | null> {
  const rows = await ipJson<NeighInfo[]>(['neigh', 'show', 'to', nextHop, 'dev', dev]);
  for (const r of rows) {
    const bad = (r.state ?? []).some((st) => st === 'INCOMPLETE' || st === 'FAILED');
    if (r.lladdr && !bad) return parseMac(r.lladdr);
  }
  return null;
}

/** Make the kernel resolve a neighbour: one datagram to the discard port is enough to start ARP/ND. */
function provokeResolution(nextHop: string): Promise<void> {
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(nextHop) ? 'udp6' : 'udp4');
    sock.on('error', () => {
      sock.close();
      resolve();
    });
    sock.send(Buffer.alloc(0), 9, nextHop, () => {
      sock.close();
      resolve();
    });
  });
}

/**
 * Resolve the MAC Sluice must send to for `address` out of `egress`. dsr-l2 needs the backend on
 * the egress segment itself; ipip may go through a gateway.
 */
export async function resolveNextHop(address: string, egress: string, needDirect: boolean, waitMs = 3000): Promise<NextHop> {
  let route: RouteInfo | undefined;
  try {
    route = (await ipJson<RouteInfo[]>(['route', 'get', address]))[0];
  } catch (e) {
    return { address, nextHop: address, dev: '', mac: null, problem: `no route to ${address}: ${(e as Error).message.split('\n')[0]}` };
  }
  if (!route) return { address, nextHop: address, dev: '', mac: null, problem: `no route to ${address}` };
  const nextHop = route.gateway ?? address;
  const base = { address, nextHop, dev: route.dev };
  if (route.dev !== egress) {
    return { ...base, mac: null, problem: `${address} is routed via ${route.dev}, not the egress interface ${egress}` };
  }
  if (needDirect && route.gateway) {
    return {
      ...base,
      mac: null,
      problem: `dsr-l2 needs ${address} on the egress segment, but it is reached via gateway ${route.gateway}; use "forwarding": "ipip"`,
    };
  }
  const deadline = Date.now() + waitMs;
  let mac = await neighbourMac(nextHop, egress);
  while (!mac && Date.now() < deadline) {
    await provokeResolution(nextHop);
    await new Promise((r) => setTimeout(r, 100));
    mac = await neighbourMac(nextHop, egress);
  }
  return { ...base, mac, problem: mac ? null : `no neighbour entry for ${nextHop} on ${egress} (host down or not on this segment?)` };
}
