import type { HealthCheckConfig } from '../health/types.js';
import type { ClusterConfig } from '../control/cluster-config.js';
import type { AnnounceConfig } from '../announce/config.js';

/**
 * The shape of a Sluice config file after validation and defaulting. The JSON Schema in
 * schema/sluice.schema.json describes the file; src/config/load.ts turns a file into this.
 */
export type Protocol = 'tcp' | 'udp';
export type Forwarding = 'dsr-l2' | 'ipip';
export type CaptureEngine = 'ring' | 'batch' | 'cap';

export interface BackendConfig {
  /** IPv4 or IPv6 address, canonical text form (packet/address.ts normalizeAddress, RFC 5952). */
  address: string;
  /** Integer >= 0; 0 means no new flows (draining). Default 1. */
  weight: number;
  /** 'draining': no new flows, existing flows continue. Default 'active'. */
  state: 'active' | 'draining';
  /** 'spare': new flows only while fewer than the service's minPrimaries primaries are healthy. Default 'primary'. */
  role: 'primary' | 'spare';
}

export interface AffinityConfig {
  mode: 'source-ip';
  timeoutS: number; // default 300
  ipv4Prefix: number; // default 32
  ipv6Prefix: number; // default 64
}

export interface ServiceConfig {
  name: string;
  /** Canonical IPv4 or IPv6 text form. */
  vip: string;
  family: 4 | 6;
  /** 1..65535, or 0 meaning every port ("port": "all" in the file). */
  port: number;
  protocol: Protocol;
  forwarding: Forwarding;
  /** Maglev table size, prime. Default 65537. */
  tableSize: number;
  backends: BackendConfig[];
  /** Steer MP_JOIN subflows by token (TCP only). Default true. */
  mptcp: boolean;
  /** MP_JOIN with an unknown token: 'drop' (default) or 'hash'. */
  mptcpUnknownJoin: 'drop' | 'hash';
  /** Echo requests to the VIP: answered by Sluice ('reply', default), forwarded to a backend, or dropped. The VIP's first service decides. */
  icmpEcho?: 'reply' | 'forward' | 'drop';
  /** ICMP errors quoting this service's packets (frag needed, too big, unreachable, time exceeded): routed to the flow's backend ('forward', default) or dropped. */
  icmpErrors?: 'forward' | 'drop';
  /** Spares take new flows while fewer primaries than this are healthy. Default 1. */
  minPrimaries: number;
  /** Health check of every backend; absent = every backend counts as healthy. */
  healthCheck?: HealthCheckConfig;
  affinity?: AffinityConfig;
}

export interface FlowTableConfig {
  /** Maximum tracked flows (rounded up to a power of two internally). Default 1048576. */
  capacity: number;
  tcpIdleTimeoutS: number; // default 300
  tcpClosingTimeoutS: number; // after FIN or RST, default 10
  udpIdleTimeoutS: number; // default 30
  /** Idle timeout of a half-open TCP flow (only SYNs seen), so spoofed SYNs leave quickly. Default 10. */
  halfOpenTimeoutS: number;
  /**
   * Half-open flows get their own bounded share and never evict an established flow (README
   * "SYN floods"). false: plain least-recently-seen eviction, kept to show what the protection
   * buys (the SYN flood e2e runs both). Default true.
   */
  floodProtection: boolean;
}

/** IPv4/IPv6 fragments of VIP traffic (README "Fragments"). */
export interface FragmentsConfig {
  /** Datagrams in flight whose backend is remembered (rounded up to a power of two). Default 65536. */
  tableSize: number;
  /** How long a datagram's backend is remembered after its last fragment. Default 2000. */
  timeoutMs: number;
  /** How long a fragment that came before its first fragment waits for it. Default 200. */
  holdMs: number;
}

/** Tagging of frames Sluice sends (README "VLAN tags"). */
export interface VlanConfig {
  /** 'untagged' (default): every tag removed; a number: that 802.1Q VLAN id; 'keep': the frame's own tags (dsr-l2). */
  egress: 'untagged' | 'keep' | number;
}

export interface CaptureConfig {
  /** 'ring': Sluice's own AF_PACKET ring (default; sees partial checksums, GSO, VLAN tags); 'batch': its libpcap batching addon; 'cap': the stock cap package. */
  engine: CaptureEngine;
  /** Kernel capture buffer in MiB. Default 32. */
  bufferMiB: number;
  /** Most frames handled per event-loop turn (batch engine). Default 256. */
  batchSize: number;
}

/** How the data plane spreads packet work over cores (README "Workers"). */
export interface DataplaneConfig {
  /** Packet worker threads in one PACKET_FANOUT group, or 'auto' (one per usable CPU). Default 1. */
  workers: number | 'auto';
}

export interface SafetyConfig {
  /** Start even if the kernel forwards IP on the capture interface. Default false. */
  allowHostForwarding: boolean;
  /** Start even if a VIP is configured on a local interface. Default false. */
  allowLocalVip: boolean;
  /** Other instances may run in this network namespace, each on its own interface and admin socket. Default false. */
  allowOtherInstances?: boolean;
}

/** The admin API's unix socket and who may use it (src/observe/admin-authorization.ts). */
export interface AdminConfig {
  socket: string;
  /** Octal permission mode of the socket, e.g. "0660" (the default), whatever the umask. */
  socketMode?: string;
  /** Group (name or gid) that owns the socket and may change state; default: Sluice's own group. */
  group?: string;
  /** Read-only requests: 'group' (root and the admin group, the default) or 'anyone' who can open the socket. */
  readers?: 'anyone' | 'group';
}

export interface SluiceConfig {
  /** Interface frames are captured on. */
  interface: string;
  /** Interface frames are sent on; defaults to `interface` (one-armed, "on a stick"). */
  egressInterface: string;
  /** Outer source addresses for ipip; default: the egress interface's first address of that family. */
  encapSource4?: string;
  encapSource6?: string;
  /** murmur3 seed of the flow hash; every instance of a cluster must use the same. Default 0. */
  hashSeed: number;
  services: ServiceConfig[];
  flowTable: FlowTableConfig;
  /** Filled in by the loader; optional so configs built in code may leave them out (defaults then). */
  fragments?: FragmentsConfig;
  vlan?: VlanConfig;
  capture: CaptureConfig;
  /** Filled in by the loader; optional so configs built in code may leave it out (1 worker then). */
  dataplane?: DataplaneConfig;
  safety: SafetyConfig;
  metrics: { listen: string };
  admin: AdminConfig;
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' };
  /** Several instances sharing flow and token owners; absent = a single instance. */
  cluster?: ClusterConfig;
  /** Announce the VIPs to routers over BGP through a speaker Sluice drives; absent = routes are static. */
  announce?: AnnounceConfig;
}
