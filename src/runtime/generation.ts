/**
 * Turns a validated config plus host facts into a DataplaneSpec: stable ids for services and
 * backends, Maglev tables keyed by backend identity, the capture filter.
 */
import type { FragmentsConfig, ServiceConfig, SluiceConfig } from '../config/types.js';
import { CONFIG_DEFAULTS } from '../config/defaults.js';
import { ipToBytes } from '../packet/address.js';
import { buildMaglevTable } from '../hash/maglev.js';
import { murmur3_32 } from '../hash/murmur3.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../packet/parsed-packet.js';
import type { BackendSpec, DataplaneSpec, ServiceSpec } from '../dataplane/contract/spec.js';
import type { InterfaceFacts, NextHop } from '../dataplane/host.js';
import { formatMac as macToText } from '../packet/mac.js';

/**
 * Stable small-integer ids for named things. A released id is not handed out again until every
 * other id has been, so a flow that still names an old id cannot meet a newcomer by accident.
 */
export class IdAllocator {
  readonly #ids = new Map<string, number>();
  readonly #used: Uint8Array;
  #next = 0;

  constructor(readonly capacity: number) {
    this.#used = new Uint8Array(capacity);
  }

  idOf(key: string): number | undefined {
    return this.#ids.get(key);
  }

  acquire(key: string): number {
    const have = this.#ids.get(key);
    if (have !== undefined) return have;
    for (let i = 0; i < this.capacity; i++) {
      const id = (this.#next + i) % this.capacity;
      if (!this.#used[id]) {
        this.#used[id] = 1;
        this.#ids.set(key, id);
        this.#next = (id + 1) % this.capacity;
        return id;
      }
    }
    throw new Error(`more than ${this.capacity} ids in use`);
  }

  /** Release every key not in `keep`. */
  retain(keep: Set<string>): void {
    for (const [key, id] of this.#ids) {
      if (!keep.has(key)) {
        this.#ids.delete(key);
        this.#used[id] = 0;
      }
    }
  }

  /**
   * Forget every id and take these (a running data plane's, on adoption). New keys get ids after
   * the highest taken, so a released id is not handed out again at once.
   */
  reset(entries: Iterable<readonly [string, number]>): void {
    this.#ids.clear();
    this.#used.fill(0);
    let next = 0;
    for (const [key, id] of entries) {
      if (!Number.isInteger(id) || id < 0 || id >= this.capacity || this.#used[id]) continue;
      this.#used[id] = 1;
      this.#ids.set(key, id);
      next = Math.max(next, id + 1);
    }
    this.#next = next % this.capacity;
  }

  entries(): IterableIterator<[string, number]> {
    return this.#ids.entries();
  }
}

export function backendKey(serviceName: string, address: string): string {
  return `${serviceName}|${address}`;
}

/**
 * The kernel-side capture filter: every frame addressed to the ingress MAC, except our own
 * frames, ARP, and traffic to the host's own addresses (which the kernel handles).
 *
 * Deliberately not narrowed to the VIPs and ports: a VIP/port BPF filter silently discards
 * truncated and malformed frames (an out-of-bounds load rejects the packet), so they could
 * never be counted by reason, and non-service traffic to the VIP would be invisible. The
 * forwarder matches services itself and counts everything it does not forward. The length
 * guards keep a truncated frame from being rejected by the address comparison.
 */
export function captureFilter(ingressMac: Uint8Array, ownMacs: readonly Uint8Array[], localAddresses: readonly string[]): string {
  const parts = [`ether dst ${macToText(ingressMac)}`, ...ownMacs.map((m) => `not ether src ${macToText(m)}`), 'not arp'];
  const v4 = localAddresses.filter((a) => !a.includes(':'));
  const v6 = localAddresses.filter((a) => a.includes(':'));
  if (v4.length > 0) parts.push(`not (ip and len >= 34 and (${v4.map((a) => `dst host ${a}`).join(' or ')}))`);
  if (v6.length > 0) parts.push(`not (ip6 and len >= 54 and (${v6.map((a) => `dst host ${a}`).join(' or ')}))`);
  return parts.join(' and ');
}

/** Runtime overrides an operator set through the admin API (drain, weight), by backendKey. */
export interface BackendOverride {
  state?: 'active' | 'draining';
  weight?: number;
}

export interface BuildInput {
  config: SluiceConfig;
  generation: number;
  serviceIds: IdAllocator;
  backendIds: IdAllocator;
  nextHops: ReadonlyMap<string, NextHop>;
  egress: InterfaceFacts;
  ingress: InterfaceFacts;
  /** Health of a backend of a service: false when its checks say it is down. Default: healthy. */
  healthy?: (service: ServiceConfig, address: string) => boolean;
  overrides?: ReadonlyMap<string, BackendOverride>;
  /** Addresses of the capture interface (host traffic the filter leaves to the kernel). */
  localAddresses?: readonly string[];
}

/** Why a backend does or does not take new flows in a generation. */
export type BackendRole = 'serving' | 'spare-serving' | 'spare-standby' | 'draining' | 'down' | 'unresolved';

export interface EffectiveBackend {
  address: string;
  weight: number;
  state: 'active' | 'draining';
  role: 'primary' | 'spare';
  status: BackendRole;
}

/**
 * Which backends of a service take new flows: active, weight > 0, resolved and healthy primaries;
 * while fewer than minPrimaries of those exist, spares in their configured order fill the gap.
 */
export function effectiveBackends(
  s: ServiceConfig,
  resolved: (address: string) => boolean,
  healthy: (address: string) => boolean,
  overrides?: ReadonlyMap<string, BackendOverride>,
): EffectiveBackend[] {
  const out: EffectiveBackend[] = s.backends.map((b) => {
    const o = overrides?.get(backendKey(s.name, b.address));
    const weight = o?.weight ?? b.weight;
    const state = o?.state ?? b.state;
    let status: BackendRole;
    if (!resolved(b.address)) status = 'unresolved';
    else if (!healthy(b.address)) status = 'down';
    else if (state === 'draining' || weight === 0) status = 'draining';
    else status = b.role === 'spare' ? 'spare-standby' : 'serving';
    return { address: b.address, weight, state, role: b.role, status };
  });
  let serving = out.filter((b) => b.status === 'serving').length;
  for (const b of out) {
    if (serving >= s.minPrimaries) break;
    if (b.status === 'spare-standby') {
      b.status = 'spare-serving';
      serving++;
    }
  }
  return out;
}

/** A hash of what identifies a service on the wire, never of instance-local ids or file order. */
export function stableServiceHash(s: Pick<ServiceConfig, 'vip' | 'protocol' | 'port'>): number {
  const text = Buffer.from(`${s.vip}|${s.protocol}|${s.port}`);
  return murmur3_32(text, 0, text.length, 0x51ce);
}

export function buildSpec(input: BuildInput): DataplaneSpec {
  const { config, serviceIds, backendIds, nextHops, egress } = input;
  const keepServices = new Set(config.services.map((s) => s.name));
  const keepBackends = new Set(config.services.flatMap((s) => s.backends.map((b) => backendKey(s.name, b.address))));
  serviceIds.retain(keepServices);
  backendIds.retain(keepBackends);

  const services: ServiceSpec[] = [];
  const backends: BackendSpec[] = [];
  for (const s of config.services) {
    const sid = serviceIds.acquire(s.name);
    const effective = effectiveBackends(
      s,
      (a) => (nextHops.get(a)?.mac ?? null) !== null,
      (a) => (input.healthy ? input.healthy(s, a) : true),
      input.overrides,
    );
    const candidates: { key: string; weight: number; id: number }[] = [];
    for (const b of effective) {
      const id = backendIds.acquire(backendKey(s.name, b.address));
      const mac = nextHops.get(b.address)?.mac ?? null;
      const serving = b.status === 'serving' || b.status === 'spare-serving';
      const down = b.status === 'down' || b.status === 'unresolved';
      backends.push({ id, serviceId: sid, address: b.address, addr: ipToBytes(b.address), nextHopMac: mac, weight: b.weight, serving, down });
      if (serving) candidates.push({ key: b.address, weight: b.weight, id });
    }
    const idx = buildMaglevTable(candidates, s.tableSize);
    const table = new Int32Array(s.tableSize);
    for (let i = 0; i < table.length; i++) table[i] = idx[i] < 0 ? -1 : candidates[idx[i]].id;
    services.push({
      id: sid,
      name: s.name,
      vip: ipToBytes(s.vip),
      protocol: s.protocol === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP,
      port: s.port,
      forwarding: s.forwarding,
      table,
      mptcp: s.mptcp,
      mptcpUnknownJoin: s.mptcpUnknownJoin,
      icmpEcho: s.icmpEcho,
      icmpErrors: s.icmpErrors,
      stableHash: stableServiceHash(s),
      affinity: s.affinity ? { timeoutMs: s.affinity.timeoutS * 1000, prefix4: s.affinity.ipv4Prefix, prefix6: s.affinity.ipv6Prefix } : null,
    });
  }
  const pick = (family: 4 | 6, configured?: string): Uint8Array | null => {
    if (configured) return ipToBytes(configured);
    const a = egress.addresses.find((x) => x.family === family);
    return a ? ipToBytes(a.address) : null;
  };
  const ownMacs = [input.ingress.mac];
  if (macToText(egress.mac) !== macToText(input.ingress.mac)) ownMacs.push(egress.mac);
  return {
    generation: input.generation,
    hashSeed: config.hashSeed,
    services,
    backends,
    egressMac: egress.mac,
    egressMtu: egress.mtu,
    encapSource4: pick(4, config.encapSource4),
    encapSource6: pick(6, config.encapSource6),
    filter: captureFilter(input.ingress.mac, ownMacs, input.localAddresses ?? []),
    vlanEgress: (config.vlan ?? CONFIG_DEFAULTS.vlan).egress,
    fragments: fragmentSpec(config.fragments ?? CONFIG_DEFAULTS.fragments),
  };
}

/** The fragments config section as the data plane takes it. */
function fragmentSpec(f: FragmentsConfig): { capacity: number; timeoutMs: number; holdMs: number } {
  return { capacity: f.tableSize, timeoutMs: f.timeoutMs, holdMs: f.holdMs };
}
