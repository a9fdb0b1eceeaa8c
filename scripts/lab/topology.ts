/**
 * The namespace lab Sluice is tested and demonstrated on:
 *
 *   client (sl-ID-cl) --- router (sl-ID-rt) ---+--- [split: ingress link] --- balancer(s)
 *                           |                                                   |
 *                           +------ segment: bridge in sl-ID-sw ----------------+---- backends sl-ID-b1..bN
 *
 * - The router routes the VIP prefixes to the balancer(s) (an ECMP multipath route over
 *   several balancers, hashed on L4). Backends hold the VIPs on lo (arp_ignore=1,
 *   arp_announce=2) and answer the client directly through the router (DSR).
 * - 'stick': the balancer has one interface on the segment (sl-lb0), the router reaches it there.
 *   'split': the balancer receives on a separate router link (sl-lbi) and sends on sl-lb0.
 * - Everything lives in namespaces named sl-<runId>-*; destroy() (or the exit/signal hooks this
 *   module installs) removes them, the processes started in them and the run directory.
 */
import { mkdirSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import {
  ProcessGroup,
  deleteNamespace,
  deleteNamespaceSync,
  ipBatch,
  listNamespaces,
  listNamespacesSync,
  nsRun,
  run,
  sleep,
  sysctl,
  type RunOptions,
  type RunResult,
  type SpawnOptions,
} from './netns.js';
import { repoRoot } from '../lib/repo.js';
import { unixGetJson, unixHttp } from '../lib/unix-http.js';
import type { BackendStats, LoadReport } from '../lib/reports.js';

export type LabMode = 'stick' | 'split';

export interface LabOptions {
  /** 1-4 chars [a-z0-9]; default: random 4 chars base36. */
  runId?: string;
  /** Number of backends, default 3 (1..200). */
  backends?: number;
  /** Default 'stick'. */
  mode?: LabMode;
  /** Configure IPv6 addresses, routes and the IPv6 VIP. Default true. */
  ipv6?: boolean;
  /** Balancer instances (1..6), default 1. More than one: ECMP route on the router. */
  balancers?: number;
  /** 1 (default) or 2: a second client link with policy routing and an MPTCP subflow endpoint. */
  clientPaths?: 1 | 2;
  /** Start the userspace IP-in-IP decapsulator in every backend. Default false. */
  ipip?: boolean;
  /** Start backend-server in every backend. Default true (needs dist/ built). */
  servers?: boolean;
  /** Server ports. Default http 80, echo 7, udp 53. */
  ports?: Partial<LabPorts>;
  /** MTU of the segment links (router, balancer egress, backends). Default 1600 with ipip (room for
   * the outer header of a full-size client packet), else 1500. */
  segmentMtu?: number;
  /** 'static' (default): the router has a static ECMP route over the balancers. 'bgp': none; the
   * router learns the VIPs over BGP (start it with scripts/lab/bgp.ts startRouterBgp). */
  vipRoutes?: 'static' | 'bgp';
  /** MTU of the router's link toward the client, router side only (default: the kernel's 1500).
   * Smaller: a narrow hop on the return path (backends -> client) that the client does not see,
   * so the client announces a full MSS and the router must send fragmentation needed / packet too
   * big back to the VIP (path MTU discovery under DSR, issue 9). */
  returnPathMtu?: number;
}

export interface LabPorts {
  http: number;
  echo: number;
  udp: number;
}

/** Roles accepted by exec/spawn/ns: 'client'|'cl', 'router'|'rt', 'switch'|'sw', 'lb' (first balancer),
 * 'lb1'.., 'b1'.., or a full namespace name. */
export type NsRole = string;

export interface InterfaceInfo {
  name: string;
  mac: string;
  ipv4: string | null;
  ipv6: string | null;
  /** What the link leads to. */
  peer: string;
}

export interface BackendInfo {
  index: number;
  name: string;
  ns: string;
  interface: string;
  mac: string;
  ipv4: string;
  ipv6: string | null;
  statsSocket: string;
  server: boolean;
  decap: boolean;
}

export interface BalancerInfo {
  index: number;
  ns: string;
  /** Capture interface for the config: sl-lb0 (stick) or sl-lbi (split). */
  interface: string;
  egressInterface: string;
  interfaces: InterfaceInfo[];
  adminSocket: string;
}

export interface LabDescription {
  runId: string;
  mode: LabMode;
  ipv6: boolean;
  runDir: string;
  segmentMtu: number;
  vips: { ipv4: string; ipv6: string | null; prefix4: string; prefix6: string | null };
  ports: LabPorts;
  namespaces: { client: string; router: string; switch: string; balancers: string[]; backends: string[] };
  client: { ns: string; interfaces: InterfaceInfo[]; gateway4: string; gateway6: string | null };
  router: { ns: string; interfaces: InterfaceInfo[] };
  switch: { ns: string; bridge: string; ports: string[] };
  balancers: BalancerInfo[];
  backends: BackendInfo[];
  kernelForwarding: { backend: number } | null;
}

export interface ConfigService {
  name: string;
  vip: string;
  port: number | 'all';
  protocol: 'tcp' | 'udp';
  forwarding?: 'dsr-l2' | 'ipip';
  tableSize?: number;
  /** Default: every lab backend of the VIP's family, weight 1. */
  backends?: { address: string; weight?: number }[];
  /** MPTCP subflow steering (Sluice's default: true for TCP). Written only when given. */
  mptcp?: boolean;
  /** What to do with an MP_JOIN SYN whose token is unknown (Sluice's default: drop). Written only when given. */
  mptcpUnknownJoin?: 'drop' | 'hash';
  /** ICMP errors for the service's flows (Sluice's default: forward). Written only when given. */
  icmpErrors?: 'forward' | 'drop';
  /** Echo requests to the VIP (Sluice's default: reply). Written only when given. */
  icmpEcho?: 'reply' | 'forward' | 'drop';
}

export interface ConfigOptions {
  /** Which balancer instance (1-based) the config is for: changes the admin socket. Default 1. */
  balancer?: number;
  /** Forwarding of services that do not say; default 'ipip' in an ipip lab, else 'dsr-l2'. */
  forwarding?: 'dsr-l2' | 'ipip';
  /** File name inside runDir; default config.json (config-lbK.json for K > 1). */
  file?: string;
  /** Top-level keys merged into the config (flowTable, capture, safety, log, ...). */
  extra?: Record<string, unknown>;
}

export interface LoadRun {
  child: ChildProcess;
  /** Resolves with the final --json report when load.js exits. */
  done: Promise<LoadReport>;
  /** Ask for an interim snapshot (SIGUSR2) and resolve with it. */
  snapshot(timeoutMs?: number): Promise<LoadReport>;
  /** SIGTERM: load.js stops early and prints its report. */
  stop(): Promise<LoadReport>;
}

export const VIP4 = '198.51.100.10';
export const VIP6 = '2001:db8:100::10';
export const VIP_PREFIX4 = '198.51.100.0/24';
export const VIP_PREFIX6 = '2001:db8:100::/64';
/** Names of the balancer's interfaces inside its namespace (the config refers to these). */
export const LB_SEGMENT_IF = 'sl-lb0';
export const LB_INGRESS_IF = 'sl-lbi';
export const DEFAULT_PORTS: LabPorts = { http: 80, echo: 7, udp: 53 };

const MAX_BACKENDS = 200;
const MAX_BALANCERS = 6;
const CLIENT_PATH2_TABLE = 102;

// ---- cleanup hooks for every live lab ----------------------------------------------------
const liveLabs = new Set<Lab>();
let hooksInstalled = false;

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) lab.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      for (const lab of liveLabs) lab.destroySync();
      // If nobody else handles the signal, keep its default meaning: die by it.
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}

function randomRunId(): string {
  let id = '';
  const bytes = randomBytes(8);
  for (let i = 0; i < 4; i++) id += ((bytes[i] ?? 0) % 36).toString(36);
  return id;
}

interface BackendState {
  index: number;
  ns: string;
  ifName: string;
  swPort: string;
  ipv4: string;
  ipv6: string | null;
  server: ChildProcess | null;
  decap: ChildProcess | null;
}

interface BalancerState {
  index: number;
  ns: string;
  segIp4: string;
  segIp6: string | null;
  /** split mode: the router link. */
  ingress: { rtIf: string; subnet: number; ip4: string; ip6: string | null; rtIp4: string; rtIp6: string | null } | null;
  swPort: string;
}

export class Lab {
  readonly runId: string;
  readonly mode: LabMode;
  readonly ipv6: boolean;
  readonly runDir: string;
  readonly ports: LabPorts;
  readonly segmentMtu: number;
  readonly returnPathMtu: number | undefined;
  readonly ipip: boolean;
  readonly withServers: boolean;
  readonly clientPaths: 1 | 2;
  readonly vipRoutes: 'static' | 'bgp';
  readonly processes = new ProcessGroup();

  readonly clientNs: string;
  readonly routerNs: string;
  readonly switchNs: string;
  readonly bridge: string;
  readonly #balancers: BalancerState[] = [];
  readonly #backends = new Map<number, BackendState>();
  readonly #macs = new Map<string, string>(); // `${ns}/${if}` -> mac
  #kernelForwarding: number | null = null;
  #destroyed = false;
  #root = repoRoot();

  private constructor(opts: LabOptions) {
    const runId = opts.runId ?? randomRunId();
    if (!/^[a-z0-9]{1,4}$/.test(runId)) throw new Error(`Lab: runId "${runId}" must be 1-4 chars of [a-z0-9] (link names must stay <= 15 chars)`);
    const backends = opts.backends ?? 3;
    if (!Number.isInteger(backends) || backends < 1 || backends > MAX_BACKENDS) throw new Error(`Lab: backends must be 1..${MAX_BACKENDS}`);
    const balancers = opts.balancers ?? 1;
    if (!Number.isInteger(balancers) || balancers < 1 || balancers > MAX_BALANCERS) throw new Error(`Lab: balancers must be 1..${MAX_BALANCERS}`);
    this.runId = runId;
    this.mode = opts.mode ?? 'stick';
    if (this.mode !== 'stick' && this.mode !== 'split') throw new Error(`Lab: mode must be 'stick' or 'split'`);
    this.ipv6 = opts.ipv6 ?? true;
    this.ipip = opts.ipip ?? false;
    this.withServers = opts.servers ?? true;
    this.clientPaths = opts.clientPaths ?? 1;
    this.vipRoutes = opts.vipRoutes ?? 'static';
    this.ports = { ...DEFAULT_PORTS, ...opts.ports };
    this.segmentMtu = opts.segmentMtu ?? (this.ipip ? 1600 : 1500);
    this.returnPathMtu = opts.returnPathMtu;
    this.runDir = `/tmp/sl-${runId}`;
    const p = `sl-${runId}`;
    this.clientNs = `${p}-cl`;
    this.routerNs = `${p}-rt`;
    this.switchNs = `${p}-sw`;
    this.bridge = `${p}-br`;
    for (let k = 1; k <= balancers; k++) {
      const ns = balancers === 1 ? `${p}-lb` : `${p}-lb${k}`;
      const subnet = 1 + k; // 10.99.2.0/24 for the first balancer's ingress link
      this.#balancers.push({
        index: k,
        ns,
        segIp4: `10.99.0.${1 + k}`,
        segIp6: this.ipv6 ? `fd00:99::${1 + k}` : null,
        swPort: `${p}-pl${k}`,
        ingress:
          this.mode === 'split'
            ? {
                rtIf: `${p}-ri${k}`,
                subnet,
                ip4: `10.99.${subnet}.2`,
                ip6: this.ipv6 ? `fd00:99:${subnet}::2` : null,
                rtIp4: `10.99.${subnet}.1`,
                rtIp6: this.ipv6 ? `fd00:99:${subnet}::1` : null,
              }
            : null,
      });
    }
    for (let i = 1; i <= backends; i++) this.#backends.set(i, this.#backendState(i));
  }

  /** Build the lab. On any failure everything created so far is removed and the error rethrown. */
  static async create(opts: LabOptions = {}): Promise<Lab> {
    const lab = new Lab(opts);
    const existing = (await listNamespaces()).filter((n) => n.startsWith(`sl-${lab.runId}-`));
    if (existing.length > 0) throw new Error(`Lab: run id ${lab.runId} is in use (${existing.join(', ')}); run "lab-cli down ${lab.runId}" or pick another id`);
    installHooks();
    liveLabs.add(lab);
    try {
      await lab.#build();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  // ---- naming ----------------------------------------------------------------------------
  #backendState(i: number): BackendState {
    if (i < 1 || i > MAX_BACKENDS) throw new Error(`Lab: backend index ${i} out of 1..${MAX_BACKENDS}`);
    const p = `sl-${this.runId}`;
    return {
      index: i,
      ns: `${p}-b${i}`,
      ifName: `${p}-e${i}`,
      swPort: `${p}-pb${i}`,
      ipv4: `10.99.0.${10 + i}`,
      ipv6: this.ipv6 ? `fd00:99::${10 + i}` : null, // text as in 10.99.0.x: b1 = fd00:99::11
      server: null,
      decap: null,
    };
  }

  get #clientIf(): string {
    return `sl-${this.runId}-c0`;
  }
  get #clientIf2(): string {
    return `sl-${this.runId}-c1`;
  }
  get #rtClientIf(): string {
    return `sl-${this.runId}-r0`;
  }
  get #rtClientIf2(): string {
    return `sl-${this.runId}-r1`;
  }
  get #rtSegIf(): string {
    return `sl-${this.runId}-rs`;
  }
  get #swRouterPort(): string {
    return `sl-${this.runId}-pr`;
  }

  /** Every namespace of this lab. */
  get namespaces(): string[] {
    return [this.clientNs, this.routerNs, this.switchNs, ...this.#balancers.map((b) => b.ns), ...[...this.#backends.values()].map((b) => b.ns)];
  }

  /** Namespace for a role: client|cl, router|rt, switch|sw, lb (first balancer), lbK, bI, or a namespace name. */
  ns(role: NsRole): string {
    switch (role) {
      case 'client':
      case 'cl':
        return this.clientNs;
      case 'router':
      case 'rt':
        return this.routerNs;
      case 'switch':
      case 'sw':
        return this.switchNs;
      case 'lb':
      case 'balancer':
        return this.#balancer(1).ns;
    }
    let m = /^lb(\d+)$/.exec(role);
    if (m) return this.#balancer(Number(m[1])).ns;
    m = /^b(\d+)$/.exec(role);
    if (m) return this.#backend(Number(m[1])).ns;
    if (this.namespaces.includes(role)) return role;
    throw new Error(`Lab: unknown namespace role "${role}" (client, router, switch, lb, lb1.., b1.., or a namespace of this lab)`);
  }

  #balancer(k: number): BalancerState {
    const b = this.#balancers[k - 1];
    if (!b) throw new Error(`Lab: no balancer ${k} (this lab has ${this.#balancers.length})`);
    return b;
  }

  #backend(i: number): BackendState {
    const b = this.#backends.get(i);
    if (!b) throw new Error(`Lab: no backend b${i} (have ${[...this.#backends.keys()].map((k) => `b${k}`).join(', ')})`);
    return b;
  }

  // ---- building --------------------------------------------------------------------------
  async #build(): Promise<void> {
    rmSync(this.runDir, { recursive: true, force: true });
    mkdirSync(this.runDir, { recursive: true, mode: 0o755 });

    await ipBatch(null, this.namespaces.map((ns) => `netns add ${ns}`));
    // Defaults first, so interfaces created afterwards inherit them (no DAD, no rp_filter, no redirects).
    await Promise.all(this.namespaces.map((ns) => sysctl(ns, this.#baseSysctls(ns))));

    const v6 = this.ipv6;
    const cl = this.clientNs;
    const rt = this.routerNs;
    const sw = this.switchNs;

    // Links, created from the namespace of one end straight into the other's (never in the host's).
    const links: Promise<void>[] = [];
    const rtLinks = [`link add ${this.#rtClientIf} type veth peer name ${this.#clientIf} netns ${cl}`, `link add ${this.#rtSegIf} type veth peer name ${this.#swRouterPort} netns ${sw}`];
    if (this.clientPaths === 2) {
      rtLinks.push(`link add ${this.#rtClientIf2} type veth peer name ${this.#clientIf2} netns ${cl}`);
    }
    for (const b of this.#balancers) {
      if (b.ingress) {
        rtLinks.push(`link add ${b.ingress.rtIf} type veth peer name ${LB_INGRESS_IF} netns ${b.ns}`);
      }
    }
    links.push(ipBatch(rt, rtLinks));
    const swLinks = [`link add ${this.bridge} type bridge forward_delay 0 stp_state 0 mcast_snooping 0`];
    for (const b of this.#balancers) {
      swLinks.push(`link add ${b.swPort} type veth peer name ${LB_SEGMENT_IF} netns ${b.ns}`);
    }
    for (const b of this.#backends.values()) {
      swLinks.push(`link add ${b.swPort} type veth peer name ${b.ifName} netns ${b.ns}`);
    }
    links.push(ipBatch(sw, swLinks));
    await Promise.all(links);

    // Addresses, state, routes.
    const mtu = this.segmentMtu;
    const clientCfg = [
      'link set lo up',
      `link set ${this.#clientIf} up`,
      `addr add 10.99.1.2/24 dev ${this.#clientIf}`,
      'route add default via 10.99.1.1',
    ];
    if (v6) clientCfg.push(`addr add fd00:99:1::2/64 dev ${this.#clientIf} nodad`, 'route add ::/0 via fd00:99:1::1');
    const clientCfg6: string[] = []; // run with -6 (ip rule needs the family)
    if (this.clientPaths === 2) {
      const t = CLIENT_PATH2_TABLE;
      clientCfg.push(
        `link set ${this.#clientIf2} up`,
        `addr add 10.99.9.2/24 dev ${this.#clientIf2}`,
        `rule add from 10.99.9.2 table ${t}`,
        `route add default via 10.99.9.1 dev ${this.#clientIf2} table ${t}`,
        'mptcp limits set subflows 4 add_addr_accepted 2',
        `mptcp endpoint add 10.99.9.2 dev ${this.#clientIf2} id 2 subflow`,
      );
      if (v6) {
        clientCfg.push(`addr add fd00:99:9::2/64 dev ${this.#clientIf2} nodad`, `route add ::/0 via fd00:99:9::1 dev ${this.#clientIf2} table ${t}`);
        clientCfg6.push(`rule add from fd00:99:9::2 table ${t}`);
      }
    }

    const rtCfg = [
      'link set lo up',
      `link set ${this.#rtClientIf}${this.returnPathMtu !== undefined ? ` mtu ${this.returnPathMtu}` : ''} up`,
      `addr add 10.99.1.1/24 dev ${this.#rtClientIf}`,
      `link set ${this.#rtSegIf} mtu ${mtu} up`,
      `addr add 10.99.0.1/24 dev ${this.#rtSegIf}`,
    ];
    if (v6) rtCfg.push(`addr add fd00:99:1::1/64 dev ${this.#rtClientIf} nodad`, `addr add fd00:99::1/64 dev ${this.#rtSegIf} nodad`);
    if (this.clientPaths === 2) {
      rtCfg.push(`link set ${this.#rtClientIf2} up`, `addr add 10.99.9.1/24 dev ${this.#rtClientIf2}`);
      if (v6) rtCfg.push(`addr add fd00:99:9::1/64 dev ${this.#rtClientIf2} nodad`);
    }
    for (const b of this.#balancers) {
      if (!b.ingress) continue;
      rtCfg.push(`link set ${b.ingress.rtIf} up`, `addr add ${b.ingress.rtIp4}/24 dev ${b.ingress.rtIf}`);
      if (v6 && b.ingress.rtIp6) rtCfg.push(`addr add ${b.ingress.rtIp6}/64 dev ${b.ingress.rtIf} nodad`);
    }
    if (this.vipRoutes === 'static') rtCfg.push(...this.#vipRoutes());

    const swCfg = ['link set lo up', `link set ${this.bridge} up`];
    for (const port of [this.#swRouterPort, ...this.#balancers.map((b) => b.swPort), ...[...this.#backends.values()].map((b) => b.swPort)]) {
      swCfg.push(`link set ${port} mtu ${mtu} master ${this.bridge} up`);
    }

    const cfgs: Promise<void>[] = [ipBatch(cl, clientCfg).then(() => ipBatch(cl, clientCfg6, { family: 6 })), ipBatch(rt, rtCfg), ipBatch(sw, swCfg)];
    for (const b of this.#balancers) cfgs.push(ipBatch(b.ns, this.#balancerCfg(b)));
    for (const b of this.#backends.values()) cfgs.push(ipBatch(b.ns, this.#backendCfg(b)));
    await Promise.all(cfgs);

    // Every veth keeps the kernel's default offloads (checksum offload, TSO/GSO), the balancer's
    // included: clients send partial checksums and GSO super-frames as real hosts, containers and
    // VMs do, and the README asks operators to change nothing on the capture interface for the
    // default (ring) engine. Per-interface sysctls that need the interface to exist:
    await Promise.all([...this.#backends.values()].map((b) => sysctl(b.ns, this.#backendIfSysctls(b))));

    await this.#readMacs(this.namespaces);
    if (this.withServers) await Promise.all([...this.#backends.keys()].map((i) => this.startServer(i)));
    if (this.ipip) await Promise.all([...this.#backends.keys()].map((i) => this.startDecap(i)));
  }

  #baseSysctls(ns: string): Record<string, number> {
    const base: Record<string, number> = {
      'net.ipv4.conf.all.rp_filter': 0,
      'net.ipv4.conf.default.rp_filter': 0,
      'net.ipv4.conf.all.send_redirects': 0,
      'net.ipv4.conf.default.send_redirects': 0,
      'net.ipv4.conf.all.accept_redirects': 0,
      'net.ipv4.conf.default.accept_redirects': 0,
      'net.ipv6.conf.all.accept_dad': 0,
      'net.ipv6.conf.default.accept_dad': 0,
      'net.ipv6.conf.all.accept_redirects': 0,
      'net.ipv6.conf.default.accept_redirects': 0,
      'net.ipv6.conf.all.accept_ra': 0,
      'net.ipv6.conf.default.accept_ra': 0,
      // Link flaps in tests must not lose the IPv6 addresses (IPv4 keeps them anyway).
      'net.ipv6.conf.all.keep_addr_on_down': 1,
      'net.ipv6.conf.default.keep_addr_on_down': 1,
    };
    if (ns === this.switchNs) {
      // The bridge needs no addresses; silence its IPv6 link-local chatter.
      base['net.ipv6.conf.all.disable_ipv6'] = 1;
      base['net.ipv6.conf.default.disable_ipv6'] = 1;
      // A switch forwards frames, it does not judge IP headers: with br_netfilter built in, the
      // bridge would validate (and drop) malformed IPv4/IPv6 before they reach the balancer.
      base['net.bridge.bridge-nf-call-iptables'] = 0;
      base['net.bridge.bridge-nf-call-ip6tables'] = 0;
      base['net.bridge.bridge-nf-call-arptables'] = 0;
    } else if (ns === this.routerNs) {
      base['net.ipv4.ip_forward'] = 1;
      base['net.ipv6.conf.all.forwarding'] = 1;
      base['net.ipv4.fib_multipath_hash_policy'] = 1;
      base['net.ipv6.fib_multipath_hash_policy'] = 1;
    } else if (this.#balancers.some((b) => b.ns === ns)) {
      // Sluice refuses to start when the kernel would forward the VIP traffic itself.
      base['net.ipv4.ip_forward'] = 0;
      base['net.ipv6.conf.all.forwarding'] = 0;
    } else if (ns !== this.clientNs) {
      base['net.ipv4.conf.all.arp_ignore'] = 1;
      base['net.ipv4.conf.all.arp_announce'] = 2;
      base['net.ipv4.conf.default.arp_ignore'] = 1;
      base['net.ipv4.conf.default.arp_announce'] = 2;
    }
    // Two client paths are for MPTCP: make sure client and backends speak it (PROTOCOLS.md).
    if (this.clientPaths === 2 && (ns === this.clientNs || [...this.#backends.values()].some((b) => b.ns === ns))) base['net.mptcp.enabled'] = 1;
    return base;
  }

  #backendIfSysctls(b: BackendState): Record<string, number> {
    return {
      [`net.ipv4.conf.${b.ifName}.arp_ignore`]: 1,
      [`net.ipv4.conf.${b.ifName}.arp_announce`]: 2,
      [`net.ipv4.conf.${b.ifName}.rp_filter`]: 0,
      'net.ipv4.conf.lo.rp_filter': 0,
    };
  }

  #vipRoutes(): string[] {
    const out: string[] = [];
    const hops4 = this.#balancers.map((b) => (b.ingress ? { via: b.ingress.ip4, dev: b.ingress.rtIf } : { via: b.segIp4, dev: this.#rtSegIf }));
    const hops6 = this.#balancers.map((b) => (b.ingress ? { via: b.ingress.ip6, dev: b.ingress.rtIf } : { via: b.segIp6, dev: this.#rtSegIf }));
    const route = (prefix: string, hops: { via: string | null; dev: string }[]): string => {
      const first = hops[0];
      if (hops.length === 1 && first) return `route replace ${prefix} via ${first.via} dev ${first.dev}`;
      return `route replace ${prefix} ${hops.map((h) => `nexthop via ${h.via} dev ${h.dev} weight 1`).join(' ')}`;
    };
    out.push(route(VIP_PREFIX4, hops4));
    if (this.ipv6) out.push(route(VIP_PREFIX6, hops6));
    return out;
  }

  #balancerCfg(b: BalancerState): string[] {
    const mtu = this.segmentMtu;
    const cfg = ['link set lo up', `link set ${LB_SEGMENT_IF} mtu ${mtu} up`, `addr add ${b.segIp4}/24 dev ${LB_SEGMENT_IF}`];
    if (b.segIp6) cfg.push(`addr add ${b.segIp6}/64 dev ${LB_SEGMENT_IF} nodad`);
    if (b.ingress) {
      cfg.push(`link set ${LB_INGRESS_IF} up`, `addr add ${b.ingress.ip4}/24 dev ${LB_INGRESS_IF}`, `route add default via ${b.ingress.rtIp4} dev ${LB_INGRESS_IF}`);
      if (b.ingress.ip6 && b.ingress.rtIp6) {
        cfg.push(`addr add ${b.ingress.ip6}/64 dev ${LB_INGRESS_IF} nodad`, `route add ::/0 via ${b.ingress.rtIp6} dev ${LB_INGRESS_IF}`);
      }
    } else {
      cfg.push(`route add default via 10.99.0.1 dev ${LB_SEGMENT_IF}`);
      if (this.ipv6) cfg.push(`route add ::/0 via fd00:99::1 dev ${LB_SEGMENT_IF}`);
    }
    return cfg;
  }

  #backendCfg(b: BackendState): string[] {
    const cfg = [
      'link set lo up',
      `addr add ${VIP4}/32 dev lo`,
      `link set ${b.ifName} mtu ${this.segmentMtu} up`,
      `addr add ${b.ipv4}/24 dev ${b.ifName}`,
      `route add default via 10.99.0.1 dev ${b.ifName}`,
    ];
    if (b.ipv6) {
      cfg.push(`addr add ${VIP6}/128 dev lo nodad`, `addr add ${b.ipv6}/64 dev ${b.ifName} nodad`, `route add ::/0 via fd00:99::1 dev ${b.ifName}`);
    }
    if (this.clientPaths === 2) cfg.push('mptcp limits set subflows 4 add_addr_accepted 2');
    return cfg;
  }

  async #readMacs(namespaces: string[]): Promise<void> {
    await Promise.all(
      namespaces.map(async (ns) => {
        const { stdout } = await run('ip', ['-n', ns, '-j', 'link', 'show']);
        const links = JSON.parse(stdout) as { ifname: string; address?: string }[];
        for (const l of links) if (l.address) this.#macs.set(`${ns}/${l.ifname}`, l.address);
      }),
    );
  }

  /** MAC address of an interface (as read after the lab was built). */
  mac(role: NsRole, ifName: string): string {
    const ns = this.ns(role);
    const m = this.#macs.get(`${ns}/${ifName}`);
    if (!m) throw new Error(`Lab: no MAC known for ${ifName} in ${ns}`);
    return m;
  }

  // ---- description and config --------------------------------------------------------
  #iface(ns: string, name: string, ipv4: string | null, ipv6: string | null, peer: string): InterfaceInfo {
    return { name, mac: this.#macs.get(`${ns}/${name}`) ?? '', ipv4, ipv6: this.ipv6 ? ipv6 : null, peer };
  }

  backends(): BackendInfo[] {
    return [...this.#backends.values()].sort((a, b) => a.index - b.index).map((b) => this.backend(b.index));
  }

  backend(i: number): BackendInfo {
    const b = this.#backend(i);
    return {
      index: b.index,
      name: `b${b.index}`,
      ns: b.ns,
      interface: b.ifName,
      mac: this.#macs.get(`${b.ns}/${b.ifName}`) ?? '',
      ipv4: b.ipv4,
      ipv6: b.ipv6,
      statsSocket: this.statsSocket(b.index),
      server: b.server !== null && b.server.exitCode === null,
      decap: b.decap !== null && b.decap.exitCode === null,
    };
  }

  balancers(): BalancerInfo[] {
    return this.#balancers.map((b) => {
      const interfaces = [this.#iface(b.ns, LB_SEGMENT_IF, b.segIp4, b.segIp6, 'segment')];
      if (b.ingress) interfaces.push(this.#iface(b.ns, LB_INGRESS_IF, b.ingress.ip4, b.ingress.ip6, 'router'));
      return {
        index: b.index,
        ns: b.ns,
        interface: b.ingress ? LB_INGRESS_IF : LB_SEGMENT_IF,
        egressInterface: LB_SEGMENT_IF,
        interfaces,
        adminSocket: this.adminSocket(b.index),
      };
    });
  }

  statsSocket(i: number): string {
    return join(this.runDir, `b${i}.sock`);
  }

  adminSocket(balancer = 1): string {
    return join(this.runDir, balancer === 1 ? 'admin.sock' : `admin-lb${balancer}.sock`);
  }

  describe(): LabDescription {
    const rtIfs = [
      this.#iface(this.routerNs, this.#rtClientIf, '10.99.1.1', 'fd00:99:1::1', 'client'),
      this.#iface(this.routerNs, this.#rtSegIf, '10.99.0.1', 'fd00:99::1', 'segment'),
    ];
    const clIfs = [this.#iface(this.clientNs, this.#clientIf, '10.99.1.2', 'fd00:99:1::2', 'router')];
    if (this.clientPaths === 2) {
      rtIfs.push(this.#iface(this.routerNs, this.#rtClientIf2, '10.99.9.1', 'fd00:99:9::1', 'client (path 2)'));
      clIfs.push(this.#iface(this.clientNs, this.#clientIf2, '10.99.9.2', 'fd00:99:9::2', 'router (path 2)'));
    }
    for (const b of this.#balancers) {
      if (b.ingress) rtIfs.push(this.#iface(this.routerNs, b.ingress.rtIf, b.ingress.rtIp4, b.ingress.rtIp6, `balancer ${b.index}`));
    }
    return {
      runId: this.runId,
      mode: this.mode,
      ipv6: this.ipv6,
      runDir: this.runDir,
      segmentMtu: this.segmentMtu,
      vips: { ipv4: VIP4, ipv6: this.ipv6 ? VIP6 : null, prefix4: VIP_PREFIX4, prefix6: this.ipv6 ? VIP_PREFIX6 : null },
      ports: { ...this.ports },
      namespaces: {
        client: this.clientNs,
        router: this.routerNs,
        switch: this.switchNs,
        balancers: this.#balancers.map((b) => b.ns),
        backends: this.backends().map((b) => b.ns),
      },
      client: { ns: this.clientNs, interfaces: clIfs, gateway4: '10.99.1.1', gateway6: this.ipv6 ? 'fd00:99:1::1' : null },
      router: { ns: this.routerNs, interfaces: rtIfs },
      switch: {
        ns: this.switchNs,
        bridge: this.bridge,
        ports: [this.#swRouterPort, ...this.#balancers.map((b) => b.swPort), ...this.backends().map((b) => this.#backend(b.index).swPort)],
      },
      balancers: this.balancers(),
      backends: this.backends(),
      kernelForwarding: this.#kernelForwarding === null ? null : { backend: this.#kernelForwarding },
    };
  }

  /** The default services: web (tcp/80), dns (udp/53), web6 (tcp/80 over IPv6), echo (tcp/7). */
  defaultServices(): ConfigService[] {
    const s: ConfigService[] = [
      { name: 'web', vip: VIP4, port: this.ports.http, protocol: 'tcp' },
      { name: 'dns', vip: VIP4, port: this.ports.udp, protocol: 'udp' },
    ];
    if (this.ipv6) s.push({ name: 'web6', vip: VIP6, port: this.ports.http, protocol: 'tcp' });
    s.push({ name: 'echo', vip: VIP4, port: this.ports.echo, protocol: 'tcp' });
    return s;
  }

  /** Write a Sluice config for this lab into runDir and return its path. */
  configFor(services?: ConfigService[], opts: ConfigOptions = {}): string {
    const k = opts.balancer ?? 1;
    const b = this.#balancer(k);
    const forwarding = opts.forwarding ?? (this.ipip ? 'ipip' : 'dsr-l2');
    const all = this.backends();
    const svcs = (services ?? this.defaultServices()).map((s) => {
      const v6 = s.vip.includes(':');
      const given: { address: string; weight?: number }[] =
        s.backends ?? all.map((x) => ({ address: (v6 ? x.ipv6 : x.ipv4) ?? '' })).filter((x) => x.address !== '');
      const backends = given.map((x) => ({ address: x.address, weight: x.weight ?? 1 }));
      const out: Record<string, unknown> = { name: s.name, vip: s.vip, port: s.port, protocol: s.protocol, forwarding: s.forwarding ?? forwarding, backends };
      if (s.tableSize !== undefined) out['tableSize'] = s.tableSize;
      if (s.mptcp !== undefined) out['mptcp'] = s.mptcp;
      if (s.mptcpUnknownJoin !== undefined) out['mptcpUnknownJoin'] = s.mptcpUnknownJoin;
      if (s.icmpErrors !== undefined) out['icmpErrors'] = s.icmpErrors;
      if (s.icmpEcho !== undefined) out['icmpEcho'] = s.icmpEcho;
      return out;
    });
    const config: Record<string, unknown> = {
      interface: b.ingress ? LB_INGRESS_IF : LB_SEGMENT_IF,
      egressInterface: LB_SEGMENT_IF,
      services: svcs,
      metrics: { listen: '127.0.0.1:9180' },
      admin: { socket: this.adminSocket(k) },
      ...opts.extra,
    };
    const file = join(this.runDir, opts.file ?? (k === 1 ? 'config.json' : `config-lb${k}.json`));
    writeFileSync(file, JSON.stringify(config, null, 2) + '\n');
    return file;
  }

  // ---- running things in namespaces ------------------------------------------------------
  exec(role: NsRole, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return nsRun(this.ns(role), argv, opts);
  }

  /** Spawn a long-lived process in a namespace; it is killed on destroy(). `logName` puts its output in runDir. */
  spawn(role: NsRole, argv: readonly string[], opts: SpawnOptions & { logName?: string } = {}): ChildProcess {
    const { logName, ...rest } = opts;
    return this.processes.spawnIn(this.ns(role), argv, { ...rest, logFile: rest.logFile ?? (logName ? join(this.runDir, logName) : undefined) });
  }

  /** `node <repo>/dist/scripts/NAME.js args...` inside a namespace. */
  nodeArgv(script: string, args: readonly string[]): string[] {
    return [process.execPath, join(this.#root, 'dist', 'scripts', `${script}.js`), ...args];
  }

  // ---- backend servers and decapsulators -----------------------------------------------
  async startServer(i: number): Promise<void> {
    const b = this.#backend(i);
    if (b.server && b.server.exitCode === null && b.server.signalCode === null) return;
    const script = join(this.#root, 'dist', 'scripts', 'backend-server.js');
    if (!existsSync(script)) throw new Error(`Lab: ${script} is missing: build first (npx tsc -p tsconfig.json)`);
    const sock = this.statsSocket(i);
    rmSync(sock, { force: true });
    const args = ['--name', `b${i}`, '--stats-socket', sock, '--http', String(this.ports.http), '--echo', String(this.ports.echo), '--udp', String(this.ports.udp), '--watch-stdin'];
    const child = this.spawn(`b${i}`, this.nodeArgv('backend-server', args), { logName: `b${i}.log`, pipeStdin: true });
    b.server = child;
    await this.#waitFor(`backend server b${i}`, child, join(this.runDir, `b${i}.log`), async () => {
      await this.backendStats(i);
      return true;
    });
  }

  async stopServer(i: number): Promise<void> {
    const b = this.#backend(i);
    if (b.server) await this.processes.stop(b.server);
    b.server = null;
  }

  async startDecap(i: number): Promise<void> {
    const b = this.#backend(i);
    if (b.decap && b.decap.exitCode === null && b.decap.signalCode === null) return;
    const statsFile = join(this.runDir, `b${i}-decap.json`);
    rmSync(statsFile, { force: true });
    const child = this.spawn(`b${i}`, ['python3', '-u', join(this.#root, 'scripts', 'ipip-decap.py'), '--stats-file', statsFile, '--watch-stdin'], {
      logName: `b${i}-decap.log`,
      pipeStdin: true,
    });
    b.decap = child;
    await this.#waitFor(`ipip decapsulator in b${i}`, child, join(this.runDir, `b${i}-decap.log`), () => Promise.resolve(existsSync(statsFile)));
  }

  async stopDecap(i: number): Promise<void> {
    const b = this.#backend(i);
    if (b.decap) await this.processes.stop(b.decap);
    b.decap = null;
  }

  /** Counters of backend i's decapsulator (asks it with SIGUSR1 and reads its stats file). */
  async decapStats(i: number): Promise<Record<string, number | string>> {
    const b = this.#backend(i);
    const file = join(this.runDir, `b${i}-decap.json`);
    const read = (): Record<string, number | string> | null => {
      try {
        return JSON.parse(readFileSync(file, 'utf8')) as Record<string, number | string>;
      } catch {
        return null;
      }
    };
    const before = read();
    if (!b.decap || b.decap.exitCode !== null) {
      if (before) return before;
      throw new Error(`Lab: no decapsulator running in b${i}`);
    }
    const gen = Number(before?.['generation'] ?? 0);
    b.decap.kill('SIGUSR1');
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const now = read();
      if (now && Number(now['generation']) > gen) return now;
      await sleep(20);
    }
    throw new Error(`Lab: decapsulator in b${i} did not report within 3 s`);
  }

  async #waitFor(what: string, child: ChildProcess, log: string, ready: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      try {
        if (await ready()) return;
      } catch {
        // not yet
      }
      await sleep(50);
    }
    let tail = '';
    try {
      tail = readFileSync(log, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      // no log
    }
    throw new Error(`Lab: ${what} did not become ready (exit ${String(child.exitCode ?? child.signalCode)}); log ${log}:\n${tail}`);
  }

  async backendStats(i: number): Promise<BackendStats> {
    return unixGetJson<BackendStats>(this.statsSocket(i), '/stats');
  }

  async allBackendStats(): Promise<Record<string, BackendStats>> {
    const out: Record<string, BackendStats> = {};
    await Promise.all(this.backends().filter((b) => b.server).map(async (b) => (out[b.name] = await this.backendStats(b.index))));
    return out;
  }

  async resetStats(i?: number): Promise<void> {
    const which = i === undefined ? this.backends().filter((b) => b.server).map((b) => b.index) : [i];
    await Promise.all(which.map((k) => unixHttp(this.statsSocket(k), 'POST', '/reset')));
  }

  /** Make backend i's HTTP server answer with `code` (e.g. 503 to fail HTTP health checks; 200 to heal). */
  async setHttpStatus(i: number, code: number): Promise<void> {
    const res = await unixHttp(this.statsSocket(i), 'POST', `/http-status?code=${code}`);
    if (res.status !== 204) throw new Error(`Lab: b${i} refused http-status ${code}: ${res.body}`);
  }

  // ---- changing the lab at runtime ---------------------------------------------------------
  /** Add a backend namespace on the segment (servers/decap as configured); returns its info. */
  async addBackend(): Promise<BackendInfo> {
    const i = Math.max(0, ...this.#backends.keys()) + 1;
    const b = this.#backendState(i);
    this.#backends.set(i, b);
    const sw = this.switchNs;
    await run('ip', ['netns', 'add', b.ns]);
    await sysctl(b.ns, this.#baseSysctls(b.ns));
    await ipBatch(sw, [`link add ${b.swPort} type veth peer name ${b.ifName} netns ${b.ns}`, `link set ${b.swPort} mtu ${this.segmentMtu} master ${this.bridge} up`]);
    await ipBatch(b.ns, this.#backendCfg(b));
    await sysctl(b.ns, this.#backendIfSysctls(b));
    await this.#readMacs([b.ns, sw]);
    if (this.withServers) await this.startServer(i);
    if (this.ipip) await this.startDecap(i);
    return this.backend(i);
  }

  /** Remove backend i entirely (its processes and namespace). */
  async removeBackend(i: number): Promise<void> {
    const b = this.#backend(i);
    await this.stopServer(i);
    await this.stopDecap(i);
    await deleteNamespace(b.ns);
    this.#backends.delete(i);
    if (this.#kernelForwarding === i) this.#kernelForwarding = null;
  }

  /** Take backend i's segment link down (a dead host, as seen from the balancer) or up again. */
  async setBackendLink(i: number, up: boolean): Promise<void> {
    const b = this.#backend(i);
    await ipBatch(b.ns, [`link set ${b.ifName} ${up ? 'up' : 'down'}`]);
    if (up) await ipBatch(b.ns, [`route replace default via 10.99.0.1 dev ${b.ifName}`, ...(b.ipv6 ? [`route replace ::/0 via fd00:99::1 dev ${b.ifName}`] : [])]);
  }

  /**
   * The baseline without Sluice: let the kernel of every balancer namespace forward the VIPs to
   * backend `backend` (ip_forward=1 plus a host route). `false` restores forwarding off.
   */
  async kernelForwarding(on: boolean, backend = 1): Promise<void> {
    const b = this.#backend(backend);
    await Promise.all(
      this.#balancers.map(async (lb) => {
        if (on) {
          await sysctl(lb.ns, { 'net.ipv4.ip_forward': 1, ...(this.ipv6 ? { 'net.ipv6.conf.all.forwarding': 1 } : {}) });
          const cmds = [`route replace ${VIP4}/32 via ${b.ipv4} dev ${LB_SEGMENT_IF}`];
          if (b.ipv6) cmds.push(`route replace ${VIP6}/128 via ${b.ipv6} dev ${LB_SEGMENT_IF}`);
          await ipBatch(lb.ns, cmds);
        } else {
          await ipBatch(lb.ns, [`route del ${VIP4}/32`, ...(this.ipv6 ? [`route del ${VIP6}/128`] : [])], { force: true }).catch(() => undefined);
          await sysctl(lb.ns, { 'net.ipv4.ip_forward': 0, ...(this.ipv6 ? { 'net.ipv6.conf.all.forwarding': 0 } : {}) });
        }
      }),
    );
    this.#kernelForwarding = on ? backend : null;
  }

  // ---- load generator --------------------------------------------------------------------
  #loadTimeout(args: readonly string[]): number {
    const i = args.indexOf('--duration');
    const d = i >= 0 ? Number(args[i + 1]) : 60;
    return (Number.isFinite(d) ? d : 60) * 1000 + 30_000;
  }

  /** Run load.js in the client namespace (adds --json) and return its parsed report. */
  async runLoad(args: readonly string[], role: NsRole = 'client'): Promise<LoadReport> {
    const full = args.includes('--json') ? [...args] : [...args, '--json'];
    const { stdout } = await this.exec(role, this.nodeArgv('load', full), { timeoutMs: this.#loadTimeout(full) });
    return lastJsonLine(stdout);
  }

  /** Start load.js in the background (client namespace) for runs that outlive a change to the lab or balancer. */
  startLoad(args: readonly string[], role: NsRole = 'client'): LoadRun {
    const full = args.includes('--json') ? [...args] : [...args, '--json'];
    const child = this.spawn(role, this.nodeArgv('load', full), { pipeStdout: true, logName: `load-${Date.now()}.log` });
    let buf = '';
    let final: LoadReport | null = null;
    const waiters: ((r: LoadReport) => void)[] = [];
    let markReady = (): void => undefined;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (line === 'load: ready') markReady();
        if (!line.startsWith('{')) continue;
        try {
          const rep = JSON.parse(line) as LoadReport;
          if (rep.interim) waiters.shift()?.(rep);
          else final = rep;
        } catch {
          // not a report line
        }
      }
    });
    const done = new Promise<LoadReport>((resolve, reject) => {
      child.on('exit', (code, signal) => {
        if (final) resolve(final);
        else reject(new Error(`load.js exited (${String(code ?? signal)}) without a report`));
      });
    });
    done.catch(() => undefined);
    return {
      child,
      done,
      // SIGUSR2 before load.js installed its handler would kill it: wait for its ready line.
      snapshot: (timeoutMs = 5000) =>
        ready.then(
          () =>
            new Promise<LoadReport>((resolve, reject) => {
              const t = setTimeout(() => reject(new Error('load.js: no snapshot within timeout')), timeoutMs);
              waiters.push((r) => {
                clearTimeout(t);
                resolve(r);
              });
              child.kill('SIGUSR2');
            }),
        ),
      stop: () => {
        child.kill('SIGTERM');
        return done;
      },
    };
  }

  // ---- teardown ----------------------------------------------------------------------------
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Stop every process, delete every sl-<runId>-* namespace and the run directory. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      await this.processes.stopAll(2000);
      const prefix = `sl-${this.runId}-`;
      const present = (await listNamespaces()).filter((n) => n.startsWith(prefix));
      await Promise.all([...new Set([...present])].map((ns) => deleteNamespace(ns)));
      rmSync(this.runDir, { recursive: true, force: true });
    } finally {
      liveLabs.delete(this);
    }
  }

  /** Synchronous teardown for exit hooks and signal handlers. */
  destroySync(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.processes.killAllSync();
    const prefix = `sl-${this.runId}-`;
    for (const ns of listNamespacesSync().filter((n) => n.startsWith(prefix))) deleteNamespaceSync(ns);
    rmSync(this.runDir, { recursive: true, force: true });
    liveLabs.delete(this);
  }
}

function lastJsonLine(stdout: string): LoadReport {
  const lines = stdout.trim().split('\n').reverse();
  for (const l of lines) {
    const t = l.trim();
    if (!t.startsWith('{')) continue;
    const rep = JSON.parse(t) as LoadReport;
    if (!rep.interim) return rep;
  }
  throw new Error(`load.js printed no JSON report:\n${stdout.slice(-2000)}`);
}

/** Remove every namespace of run `runId` (or of every sl-* run with runId '*'), its processes and run dir. */
export async function teardownRun(runId: string): Promise<string[]> {
  const all = await listNamespaces();
  const victims = runId === '*' ? all.filter((n) => n.startsWith('sl-')) : all.filter((n) => n.startsWith(`sl-${runId}-`));
  await Promise.all(victims.map((ns) => deleteNamespace(ns)));
  const ids = runId === '*' ? [...new Set(victims.map((n) => n.split('-')[1] ?? ''))].filter((x) => x) : [runId];
  for (const id of ids) if (/^[a-z0-9]{1,4}$/.test(id)) rmSync(`/tmp/sl-${id}`, { recursive: true, force: true });
  return victims;
}
