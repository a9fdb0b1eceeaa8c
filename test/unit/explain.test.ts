/**
 * `sluice explain`, data-plane side (src/dataplane/explain.ts), against a real Forwarder: what
 * explain names must be what forward() then does, and explaining must change nothing.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Forwarder } from '../../src/dataplane/forwarder.js';
import { explainFlow, explainQuery, REPRESENTATIVE_CLIENT_PORT } from '../../src/dataplane/explain.js';
import { buildFrame } from '../../src/packet/build.js';
import { Drop } from '../../src/packet/drop-reasons.js';
import { DROPS_BASE } from '../../src/dataplane/contract/counters.js';
import { TCP_ACK, TCP_SYN } from '../../src/packet/parsed-packet.js';
import { IdAllocator, buildSpec } from '../../src/runtime/generation.js';
import type { DataplaneSpec } from '../../src/dataplane/contract/spec.js';
import type { ExplainTuple } from '../../src/dataplane/contract/messages.js';
import type { ServiceConfig, SluiceConfig } from '../../src/config/types.js';
import type { NextHop } from '../../src/dataplane/host.js';
import { parseMac, formatMac } from '../../src/packet/mac.js';
import { tokenKey } from '../../src/packet/token-key.js';
import { QUERY_FLOW, QUERY_TOKEN } from '../../src/dataplane/owner-hold.js';
import { CLIENT_KEY, LINUX_SERVER_KEY, LINUX_SERVER_TOKEN, optMpCapable, optMpJoinSyn } from '../fixtures/mptcp-frames.js';

const ROUTER_MAC = '02:00:00:00:00:01';
const EGRESS_MAC = '02:00:00:00:00:02';
const VIP = '198.51.100.10';
const CLIENT = '10.99.1.2';
const BACKENDS = ['10.99.0.11', '10.99.0.12', '10.99.0.13'];
const macOf = (address: string): string => `02:00:00:00:01:${Number(address.split('.').pop()).toString(16).padStart(2, '0')}`;

function config(mutate: (s: ServiceConfig[]) => void = () => undefined): SluiceConfig {
  const backends = BACKENDS.map((address) => ({ address, weight: 1, state: 'active' as const, role: 'primary' as const }));
  const services: ServiceConfig[] = [
    { name: 'web', vip: VIP, family: 4, port: 80, protocol: 'tcp', forwarding: 'dsr-l2', tableSize: 251, mptcp: true, mptcpUnknownJoin: 'drop', minPrimaries: 1, backends: backends.map((b) => ({ ...b })) },
    { name: 'dns', vip: VIP, family: 4, port: 53, protocol: 'udp', forwarding: 'dsr-l2', tableSize: 251, mptcp: false, mptcpUnknownJoin: 'drop', minPrimaries: 1, backends: backends.map((b) => ({ ...b })) },
  ];
  mutate(services);
  return {
    interface: 'sl-lb0',
    egressInterface: 'sl-lb0',
    hashSeed: 0,
    services,
    flowTable: { capacity: 4096, tcpIdleTimeoutS: 300, tcpClosingTimeoutS: 10, udpIdleTimeoutS: 30, halfOpenTimeoutS: 10, floodProtection: true },
    capture: { engine: 'batch', bufferMiB: 32, batchSize: 256 },
    safety: { allowHostForwarding: false, allowLocalVip: false },
    metrics: { listen: '127.0.0.1:9180' },
    admin: { socket: '/tmp/x.sock' },
    log: { level: 'info' },
  };
}

const iface = { name: 'sl-lb0', mac: parseMac(EGRESS_MAC), mtu: 1500, addresses: [{ family: 4 as const, address: '10.99.0.2' }], allAddresses: ['10.99.0.2'] };

class Harness {
  readonly fwd = new Forwarder({ flowCapacity: 4096, tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000 });
  readonly sids = new IdAllocator(64);
  readonly bids = new IdAllocator(1024);
  readonly tx = Buffer.alloc(4096);
  spec!: DataplaneSpec;
  generation = 0;
  apply(cfg: SluiceConfig, unresolved: string[] = [], down: string[] = []): void {
    const nextHops = new Map<string, NextHop>(BACKENDS.map((a) => [a, { address: a, nextHop: a, dev: 'sl-lb0', mac: unresolved.includes(a) ? null : parseMac(macOf(a)), problem: unresolved.includes(a) ? 'unresolved' : null }]));
    this.spec = buildSpec({ config: cfg, generation: ++this.generation, serviceIds: this.sids, backendIds: this.bids, nextHops, ingress: iface, egress: iface, healthy: (_s, a) => !down.includes(a) });
    this.fwd.apply(this.spec);
  }
  /** The backend address a frame reached (by its next hop's MAC), or null when it was not sent. */
  reached(frame: Buffer, now: number): string | null {
    const len = this.fwd.forward(frame, frame.length, this.tx, now);
    if (len === 0) return null;
    const mac = formatMac(this.tx, 0);
    return BACKENDS.find((a) => macOf(a) === mac) ?? mac;
  }
  address(id: number | null): string | null {
    if (id === null || id < 0) return null;
    return this.spec.backends.find((b) => b.id === id)?.address ?? `#${id}`;
  }
  /** Everything explain could disturb: counters, live flows, tokens, affinity entries. */
  snapshot(): string {
    return JSON.stringify([Array.from(this.fwd.counters), this.fwd.flows.size, this.fwd.tokens.active, this.fwd.affinity.size]);
  }
}

const tcp = (sport: number, flags: number, options?: Uint8Array): Buffer =>
  buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src: CLIENT, dst: VIP }, tcp: { sport, dport: 80, flags, options } });
const udp = (sport: number): Buffer => buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src: CLIENT, dst: VIP }, udp: { sport, dport: 53 }, payload: 'q' });
const tuple = (protocol: 'tcp' | 'udp', clientPort: number, port = protocol === 'tcp' ? 80 : 53): ExplainTuple => ({ protocol, client: CLIENT, clientPort, vip: VIP, port });
const pad = (b: number[]): Uint8Array => {
  const out = [...b];
  while (out.length % 4 !== 0) out.push(1);
  return Uint8Array.from(out);
};

describe('explain names what the forwarder does', () => {
  it.each([
    { name: 'untracked TCP: the table pick, which the SYN then reaches', protocol: 'tcp' as const, port: 40100, frame: () => tcp(40100, TCP_SYN) },
    { name: 'untracked UDP: the table pick, which the datagram then reaches', protocol: 'udp' as const, port: 40101, frame: () => udp(40101) },
  ])('$name', ({ protocol, port, frame }) => {
    const h = new Harness();
    h.apply(config());
    const d = explainFlow(h.fwd, tuple(protocol, port), undefined, 1000, 'given');
    expect(d.tracked).toBeNull();
    expect(d.next.by).toBe('table');
    expect(d.tableSlot).toBe((d.hash ?? 0) % 251);
    expect(d.tableBackendId).toBe(d.next.backendId);
    expect(h.reached(frame(), 1000)).toBe(h.address(d.next.backendId));
  });

  it('tracked flow: its entry decides, since its first packet, even after the table changed', () => {
    const h = new Harness();
    h.apply(config());
    const first = h.reached(tcp(40200, TCP_SYN), 5000);
    // Drain the flow's backend: the table moves on, the flow stays.
    h.apply(config((s) => (s[0].backends.find((b) => b.address === first)!.state = 'draining')));
    const d = explainFlow(h.fwd, tuple('tcp', 40200), undefined, 7000, 'given');
    expect(d.tracked).toMatchObject({ state: 'active', keeps: true, ageMs: 2000, since: new Date(5000).toISOString(), generation: 1 });
    expect(d.next).toEqual({ backendId: d.tracked?.backendId, by: 'flow-entry', drop: null });
    expect(h.address(d.next.backendId)).toBe(first);
    expect(h.address(d.tableBackendId)).not.toBe(first);
    expect(h.reached(tcp(40200, TCP_ACK), 7000)).toBe(first);
  });

  it('UDP flow after its entry expired: untracked again, table pick reached', () => {
    const h = new Harness();
    h.apply(config());
    h.reached(udp(40300), 1000);
    const d = explainFlow(h.fwd, tuple('udp', 40300), undefined, 1000 + 31_000, 'given');
    expect(d.tracked).toBeNull();
    expect(h.reached(udp(40300), 1000 + 31_000)).toBe(h.address(d.next.backendId));
  });

  it('MPTCP: a join with a learned token follows its connection; the tracked subflow shows its token', () => {
    const h = new Harness();
    h.apply(config());
    const first = h.reached(tcp(40400, TCP_SYN, pad(optMpCapable({ version: 1 }))), 1000);
    h.reached(tcp(40400, TCP_ACK, pad(optMpCapable({ version: 1, senderKey: CLIENT_KEY, receiverKey: LINUX_SERVER_KEY }))), 1001);
    const join = explainFlow(h.fwd, tuple('tcp', 40401), LINUX_SERVER_TOKEN, 1002, 'given');
    expect(join.mptcpToken).toBe(LINUX_SERVER_TOKEN);
    expect(join.next.by).toBe('mptcp-token');
    expect(h.address(join.next.backendId)).toBe(first);
    const joinSyn = pad(optMpJoinSyn({ backup: false, addressId: 2, token: [...Buffer.from(LINUX_SERVER_TOKEN.toString(16).padStart(8, '0'), 'hex')], nonce: 7 }));
    expect(h.reached(tcp(40401, TCP_SYN, joinSyn), 1002)).toBe(first);
    const sub = explainFlow(h.fwd, tuple('tcp', 40401), undefined, 1003, 'given');
    expect(sub.mptcpToken).toBe(LINUX_SERVER_TOKEN);
    expect(sub.tokenBackendId).toBe(join.next.backendId);
    // An unknown token on a service that drops unknown joins.
    const unknown = explainFlow(h.fwd, tuple('tcp', 40402), 0x01020304, 1003, 'given');
    expect(unknown.next).toEqual({ backendId: null, by: 'drop', drop: 'mptcp_join_unknown_token' });
    expect(createHash('sha256').update(Buffer.from(LINUX_SERVER_KEY)).digest().readUInt32BE(0)).toBe(LINUX_SERVER_TOKEN);
  });

  it.each([
    { name: 'an untracked mid-flow ACK asks for its flow key', sport: 40600, token: undefined, asks: 'flow' as const },
    { name: 'a join SYN with a token this instance does not know asks for the token', sport: 40601, token: 0x01020304, asks: 'token' as const },
  ])('cluster with sync: $name, as the forwarder then does', ({ sport, token, asks }) => {
    const h = new Harness();
    h.apply(config());
    const queries: { kind: number; key: string }[] = [];
    h.fwd.setOwnerQuery((_q, kind, key) => queries.push({ kind, key: Buffer.from(key).toString('hex') }));
    const d = explainFlow(h.fwd, tuple('tcp', sport), token, 1000, 'given');
    expect(d.next).toEqual({ backendId: null, by: 'owner-query', drop: null, asks });
    const frame =
      token === undefined
        ? tcp(sport, TCP_ACK)
        : tcp(sport, TCP_SYN, pad(optMpJoinSyn({ backup: false, addressId: 2, token: [...Buffer.from(token.toString(16).padStart(8, '0'), 'hex')], nonce: 7 })));
    expect(h.reached(frame, 1000), 'held for the answer').toBeNull();
    // The query the forwarder sent is for the key the admin API asks the cluster about.
    expect(queries).toEqual([asks === 'flow' ? { kind: QUERY_FLOW, key: d.ownerKey } : { kind: QUERY_TOKEN, key: Buffer.from(tokenKey(token ?? 0)).toString('hex') }]);
  });

  it.each([
    { name: 'a port no service listens on: no_service', t: tuple('tcp', 40500, 8080), unresolved: [] as string[], drop: 'no_service' as const },
    { name: 'no backend with a next hop in the table: no_backend', t: tuple('udp', 40501), unresolved: BACKENDS, drop: 'no_backend' as const },
  ])('drop reason: $name', ({ t, unresolved, drop }) => {
    const h = new Harness();
    h.apply(config(), unresolved);
    const before = h.fwd.counters.slice();
    const d = explainFlow(h.fwd, t, undefined, 1000, 'given');
    expect(d.next.drop).toBe(drop);
    const frame = t.protocol === 'tcp' ? buildFrame({ ipv4: { src: CLIENT, dst: VIP }, tcp: { sport: t.clientPort, dport: t.port, flags: TCP_SYN } }) : udp(t.clientPort);
    expect(h.reached(frame, 1000)).toBeNull();
    // The forwarder counted the very reason explain named.
    expect(h.fwd.counters[DROPS_BASE + Drop[drop]] - before[DROPS_BASE + Drop[drop]]).toBe(1);
  });

  it('client affinity: the affinity entry decides a new flow', () => {
    const h = new Harness();
    h.apply(config((s) => (s[0].affinity = { mode: 'source-ip', timeoutS: 300, ipv4Prefix: 24, ipv6Prefix: 64 })));
    const first = h.reached(tcp(40600, TCP_SYN), 1000);
    const d = explainFlow(h.fwd, tuple('tcp', 40601), undefined, 1001, 'given');
    expect(d.next.by).toBe('affinity');
    expect(h.address(d.affinityBackendId)).toBe(first);
    expect(h.reached(tcp(40601, TCP_SYN), 1001)).toBe(first);
  });
});

describe('explain without a client port', () => {
  it.each([
    { name: 'explains each tracked flow of the client', ports: [40700, 40701, 40702], want: 'tracked' },
    { name: 'explains a representative port when none is tracked', ports: [] as number[], want: 'representative' },
  ])('$name', ({ ports, want }) => {
    const h = new Harness();
    h.apply(config());
    for (const p of ports) h.reached(tcp(p, TCP_SYN), 1000);
    const out = explainQuery(h.fwd, { protocol: 'tcp', client: CLIENT, vip: VIP, port: 80 }, 1001);
    expect(out.map((d) => d.portSource)).toEqual(ports.length === 0 ? [want] : ports.map(() => want));
    expect(out.map((d) => d.clientPort).sort()).toEqual(ports.length === 0 ? [REPRESENTATIVE_CLIENT_PORT] : ports);
  });

  it.each([
    { name: 'a client that is not an address', q: { client: 'nope', vip: VIP }, error: /client "nope"/ },
    { name: 'mixed families', q: { client: 'fd00::1', vip: VIP }, error: /different address families/ },
  ])('refuses $name', ({ q, error }) => {
    const h = new Harness();
    h.apply(config());
    expect(() => explainQuery(h.fwd, { protocol: 'tcp', port: 80, ...q }, 1000)).toThrow(error);
  });
});

describe('explain has no side effects', () => {
  it('changes no counter, flow, token or affinity entry; the packet path would have freed the expired entry', () => {
    const h = new Harness();
    h.apply(config((s) => (s[1].affinity = { mode: 'source-ip', timeoutS: 300, ipv4Prefix: 24, ipv6Prefix: 64 })));
    h.reached(udp(40800), 1000);
    h.reached(tcp(40801, TCP_SYN, pad(optMpCapable({ version: 1 }))), 1000);
    h.reached(tcp(40801, TCP_ACK, pad(optMpCapable({ version: 1, senderKey: CLIENT_KEY, receiverKey: LINUX_SERVER_KEY }))), 1000);
    const before = h.snapshot();
    const later = 1000 + 31_000; // the UDP entry has expired
    explainFlow(h.fwd, tuple('udp', 40800), undefined, later, 'given');
    explainFlow(h.fwd, tuple('tcp', 40802), LINUX_SERVER_TOKEN, later, 'given');
    explainQuery(h.fwd, { protocol: 'udp', client: CLIENT, vip: VIP, port: 53 }, later);
    expect(h.snapshot()).toBe(before);
    // The same lookup on the packet path (feature off: no peek) frees the expired entry.
    const sizeBefore = h.fwd.flows.size;
    h.reached(udp(40800), later);
    h.fwd.tick(later, 1 << 16);
    console.log(`flows live: explain left ${sizeBefore}, the packet path then ${h.fwd.flows.size} (expired entry freed, new one made)`);
    expect(h.fwd.counters[0]).toBeGreaterThan(JSON.parse(before)[0][0]);
  });
});
