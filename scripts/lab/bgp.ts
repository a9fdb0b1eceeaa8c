/**
 * BGP in the namespace lab: the router namespace runs BIRD 2 (Debian's bird2) as a real BGP
 * router, and each Sluice instance announces the VIPs to it through its own BIRD (the
 * "announce" config section, src/announce/).
 *
 *   router (AS 65000, 10.99.0.1 / fd00:99::1 on the segment)
 *     eBGP + BFD to every balancer lbK (AS 65001, 10.99.0.(1+K) / fd00:99::(1+K)), one IPv4 and
 *     one IPv6 session each; imports only host routes inside the VIP prefixes; installs them in
 *     the kernel with "merge paths" (one ECMP route over every instance that announces), hashed
 *     on L4 (the lab sets fib_multipath_hash_policy=1 for IPv4 and IPv6 in the router).
 *
 * Build the lab with `vipRoutes: 'bgp'` so the router has no static VIP route, start the router
 * with startRouterBgp(), and give each instance's config announceSection(k).
 *
 * pinFlowsToNextHop() turns the router flow-sticky for IPv4 VIP traffic, as stateful or
 * flow-pinning routers are: a connection keeps the next hop it started on, even after that next
 * hop's route is withdrawn; new connections follow the BGP-learned routes.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { VIP_PREFIX4, VIP_PREFIX6, type Lab } from './topology.js';
import { sleep } from './netns.js';

export const ROUTER_ASN = 65000;
export const BALANCER_ASN = 65001;
export const ROUTER_SEGMENT4 = '10.99.0.1';
export const ROUTER_SEGMENT6 = 'fd00:99::1';

/** Liveness timers used on both sides in the lab: BFD detects a silent peer in intervalMs x multiplier. */
export interface LabBgpTimers {
  bfdIntervalMs: number;
  bfdMultiplier: number;
  holdTimeS: number;
}
export const LAB_TIMERS: LabBgpTimers = { bfdIntervalMs: 100, bfdMultiplier: 3, holdTimeS: 3 };

/** Balancer k's segment addresses (lb1 = 10.99.0.2 / fd00:99::2, ...). */
export const balancerSegment4 = (k: number): string => `10.99.0.${1 + k}`;
export const balancerSegment6 = (k: number): string => `fd00:99::${1 + k}`; // as topology.ts writes it

/** The router's bird.conf: sessions to `balancers` instances, ECMP into the kernel, BFD. Pure. */
export function routerBirdConfig(balancers: number, ipv6: boolean, t: LabBgpTimers = LAB_TIMERS): string {
  const out = [
    '# The lab router (scripts/lab/bgp.ts): learns the VIPs from every Sluice instance, installs ECMP routes.',
    'log stderr { info, remote, warning, error, auth, fatal, bug };',
    `router id ${ROUTER_SEGMENT4};`,
    '',
    'protocol device { scan time 10; }',
    '',
    '# One kernel route per VIP with a next hop per announcing instance (merge paths = ECMP).',
    'protocol kernel kernel4 {',
    '  ipv4 { import none; export all; };',
    '  merge paths on;',
    '}',
  ];
  if (ipv6) out.push('protocol kernel kernel6 {', '  ipv6 { import none; export all; };', '  merge paths on;', '}');
  out.push(
    '',
    'protocol bfd {',
    `  interface "*" { interval ${t.bfdIntervalMs} ms; multiplier ${t.bfdMultiplier}; };`,
    '}',
    '',
    '# Accept only host routes inside the VIP prefixes from the balancers.',
    `filter vips4 { if net ~ [ ${VIP_PREFIX4}{32,32} ] then accept; reject; }`,
    `filter vips6 { if net ~ [ ${VIP_PREFIX6}{128,128} ] then accept; reject; }`,
    '',
    'template bgp balancer {',
    `  local as ${ROUTER_ASN};`,
    `  hold time ${t.holdTimeS};`,
    `  keepalive time ${Math.max(1, Math.floor(t.holdTimeS / 3))};`,
    '  connect retry time 2;',
    '  error wait time 1, 16;',
    '  bfd on;',
    '}',
  );
  for (let k = 1; k <= balancers; k++) {
    out.push(`protocol bgp lb${k}_v4 from balancer {`, `  neighbor ${balancerSegment4(k)} as ${BALANCER_ASN};`, '  ipv4 { import filter vips4; export none; };', '}');
    if (ipv6) out.push(`protocol bgp lb${k}_v6 from balancer {`, `  neighbor ${balancerSegment6(k)} as ${BALANCER_ASN};`, '  ipv6 { import filter vips6; export none; };', '}');
  }
  return out.join('\n') + '\n';
}

/** Balancer k's "announce" section: eBGP to the router over IPv4 (and IPv6), the lab's timers. */
export function announceSection(lab: Lab, k: number, t: LabBgpTimers = LAB_TIMERS, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const peers: { address: string; asn: number }[] = [{ address: ROUTER_SEGMENT4, asn: ROUTER_ASN }];
  if (lab.ipv6) peers.push({ address: ROUTER_SEGMENT6, asn: ROUTER_ASN });
  return {
    speaker: 'bird2',
    localAsn: BALANCER_ASN,
    routerId: balancerSegment4(k),
    peers,
    bfd: { enabled: true, intervalMs: t.bfdIntervalMs, multiplier: t.bfdMultiplier },
    holdTimeS: t.holdTimeS,
    runDir: join(lab.describe().runDir, `speaker-lb${k}`),
    ...extra,
  };
}

export interface RouterBgp {
  child: ChildProcess;
  socket: string;
  /** Run birdc against the router's BIRD; resolves with its output. */
  birdc(args: readonly string[]): Promise<string>;
  /** Next hops of the kernel route to exactly this VIP (a host route), sorted; [] when there is none. */
  nextHops(vip: string): Promise<string[]>;
  /** BGP sessions that are Established, e.g. ["lb1_v4", "lb1_v6", ...]. */
  established(): Promise<string[]>;
}

/** Start BIRD in the router namespace (killed with the lab) and wait until its control socket answers. */
export async function startRouterBgp(lab: Lab, balancers: number, t: LabBgpTimers = LAB_TIMERS): Promise<RouterBgp> {
  const dir = lab.describe().runDir;
  const conf = join(dir, 'router-bird.conf');
  const socket = join(dir, 'router-bird.ctl');
  writeFileSync(conf, routerBirdConfig(balancers, lab.ipv6, t));
  const child = lab.spawn('router', ['bird', '-f', '-c', conf, '-s', socket, '-P', join(dir, 'router-bird.pid')], { logName: 'router-bird.log' });
  const birdc = async (args: readonly string[]): Promise<string> => (await lab.exec('router', ['birdc', '-s', socket, ...args])).stdout;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`lab: the router's bird exited with ${child.exitCode}; see ${join(dir, 'router-bird.log')}`);
    if (existsSync(socket)) {
      try {
        await birdc(['show', 'status']);
        break;
      } catch {
        // not ready
      }
    }
    if (Date.now() > deadline) throw new Error(`lab: the router's bird did not answer within 10 s; see ${join(dir, 'router-bird.log')}`);
    await sleep(50);
  }
  return {
    child,
    socket,
    birdc,
    async nextHops(vip: string): Promise<string[]> {
      const v6 = vip.includes(':');
      const { stdout } = await lab.exec('router', ['ip', v6 ? '-6' : '-4', 'route', 'show', 'exact', `${vip}/${v6 ? 128 : 32}`]);
      return [...stdout.matchAll(/via (?:inet6 )?(\S+)/g)].map((m) => m[1]).sort();
    },
    async established(): Promise<string[]> {
      const text = await birdc(['show', 'protocols']);
      return [...text.matchAll(/^(lb\d+_v[46])\s+BGP\s+\S+\s+up\s+\S+\s+Established/gm)].map((m) => m[1]).sort();
    },
  };
}

/** nftables table that pinFlowsToNextHop() loads into the router namespace. */
export const PIN_TABLE = 'sl_pin';
/** Routing table of balancer k's pinned connections (fwmark k). */
export const pinRouteTable = (k: number): number => 100 + k;

/**
 * The nft ruleset of pinFlowsToNextHop(). Pure. A new connection to a VIP records, after the
 * routing decision (postrouting), its next hop as the conntrack mark (balancer k -> mark k);
 * every later packet of it copies that mark to the packet (prerouting), so the router's
 * `ip rule fwmark k` sends it to balancer k whatever the main table says now.
 */
export function pinRuleset(balancers: number): string {
  const map = Array.from({ length: balancers }, (_, i) => `${balancerSegment4(i + 1)} : ${i + 1}`).join(', ');
  return [
    `table ip ${PIN_TABLE} {`,
    '  chain pre {',
    '    type filter hook prerouting priority mangle; policy accept;',
    `    ip daddr ${VIP_PREFIX4} ct mark != 0 counter meta mark set ct mark`,
    '  }',
    '  chain post {',
    '    type filter hook postrouting priority mangle; policy accept;',
    `    ip daddr ${VIP_PREFIX4} ct state new counter ct mark set rt ip nexthop map { ${map} }`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * Make the lab router flow-sticky for IPv4 VIP traffic (conntrack + nftables + policy routing,
 * router namespace only): each connection stays on the balancer it started on, also after that
 * balancer withdraws; new connections follow the main table (the BGP-learned ECMP routes).
 * Only connections that start after this call are pinned. Resolves with a handle whose remove()
 * takes the rules and routes out again (idempotent; call it in a finally).
 */
export interface FlowPin {
  /** The nft counters: new VIP connections whose next hop was recorded, later packets steered by it. */
  counts(): Promise<{ connections: number; packets: number }>;
  remove(): Promise<void>;
}

export async function pinFlowsToNextHop(lab: Lab, balancers: number): Promise<FlowPin> {
  const file = join(lab.describe().runDir, 'router-pin.nft');
  writeFileSync(file, pinRuleset(balancers));
  let removed = false;
  const remove = async (): Promise<void> => {
    if (removed) return;
    removed = true;
    // Each step on its own: a half-installed state is removed as far as it got.
    for (let k = 1; k <= balancers; k++) {
      await lab.exec('router', ['ip', '-4', 'rule', 'del', 'fwmark', String(k), 'lookup', String(pinRouteTable(k))]).catch(() => undefined);
      await lab.exec('router', ['ip', '-4', 'route', 'flush', 'table', String(pinRouteTable(k))]).catch(() => undefined);
    }
    await lab.exec('router', ['nft', 'delete', 'table', 'ip', PIN_TABLE]).catch(() => undefined);
  };
  try {
    for (let k = 1; k <= balancers; k++) {
      const table = String(pinRouteTable(k));
      await lab.exec('router', ['ip', '-4', 'route', 'replace', VIP_PREFIX4, 'via', balancerSegment4(k), 'table', table]);
      await lab.exec('router', ['ip', '-4', 'rule', 'add', 'fwmark', String(k), 'lookup', table, 'priority', table]);
    }
    await lab.exec('router', ['nft', '-f', file]);
  } catch (err) {
    await remove();
    throw err;
  }
  return {
    remove,
    async counts() {
      const text = (await lab.exec('router', ['nft', 'list', 'table', 'ip', PIN_TABLE])).stdout;
      const of = (re: RegExp): number => Number(re.exec(text)?.[1] ?? 0);
      return { connections: of(/ct state new counter packets (\d+)/), packets: of(/ct mark != \S+ counter packets (\d+)/) };
    },
  };
}
