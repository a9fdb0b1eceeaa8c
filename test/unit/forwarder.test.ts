import { describe, expect, it, beforeEach } from 'vitest';
import { createHash } from 'node:crypto';
import { Forwarder, type ForwarderOptions } from '../../src/dataplane/forwarder.js';
import { MptcpTokenTable } from '../../src/dataplane/mptcp-tokens.js';
import { QUERY_DEADLINE_MS, RETRY_DEADLINE_MS, TOKEN_QUERY_DEADLINE_MS } from '../../src/dataplane/owner-hold.js';
import { buildFrame } from '../../src/packet/build.js';
import { parseFrame } from '../../src/packet/parse.js';
import { ParsedPacket, TCP_ACK, TCP_FIN, TCP_SYN } from '../../src/packet/parsed-packet.js';
import { DROP_REASONS, Drop } from '../../src/packet/drop-reasons.js';
import { DROPS_BASE, ENTITY, G, backendCounter } from '../../src/dataplane/contract/counters.js';
import { IdAllocator, buildSpec } from '../../src/runtime/generation.js';
import type { ServiceConfig, SluiceConfig } from '../../src/config/types.js';
import type { NextHop } from '../../src/dataplane/host.js';
import { parseMac, formatMac } from '../../src/packet/mac.js';
import { MALFORMED_FRAMES } from '../fixtures/malformed-frames.js';
import { LINUX_SERVER_KEY, LINUX_SERVER_TOKEN, CLIENT_KEY, optMpCapable, optMpJoinSyn, optNop, optTimestamps } from '../fixtures/mptcp-frames.js';

const ROUTER_MAC = '02:00:00:00:00:01';
const EGRESS_MAC = '02:00:00:00:00:02';
const macOf = (address: string): string => {
  const last = Number(address.split(/[.:]/).pop() ?? '0');
  return `02:00:00:00:01:${last.toString(16).padStart(2, '0')}`;
};

/** A service as the tests write it: the defaults (MPTCP, spares, backend state and role) are filled in by config(). */
type ServiceInput = Omit<ServiceConfig, 'mptcp' | 'mptcpUnknownJoin' | 'minPrimaries' | 'backends'> & { backends: { address: string; weight: number }[] };

function config(overrides: Partial<SluiceConfig> = {}, backends4 = ['10.99.0.11', '10.99.0.12', '10.99.0.13']): SluiceConfig {
  return {
    interface: 'sl-lb0',
    egressInterface: 'sl-lb0',
    hashSeed: 0,
    services: (
      [
      { name: 'web', vip: '198.51.100.10', family: 4, port: 80, protocol: 'tcp', forwarding: 'dsr-l2', tableSize: 251, backends: backends4.map((a) => ({ address: a, weight: 1 })) },
      { name: 'dns', vip: '198.51.100.10', family: 4, port: 53, protocol: 'udp', forwarding: 'ipip', tableSize: 251, backends: backends4.map((a) => ({ address: a, weight: 1 })) },
      { name: 'web6', vip: '2001:db8:100::10', family: 6, port: 80, protocol: 'tcp', forwarding: 'dsr-l2', tableSize: 251, backends: ['fd00:99::11', 'fd00:99::12'].map((a) => ({ address: a, weight: 1 })) },
      { name: 'any', vip: '198.51.100.20', family: 4, port: 0, protocol: 'udp', forwarding: 'dsr-l2', tableSize: 251, backends: [{ address: '10.99.0.11', weight: 1 }] },
      ] as ServiceInput[]
    ).map((svc) => ({ mptcp: svc.protocol === 'tcp', mptcpUnknownJoin: 'drop' as const, minPrimaries: 1, ...svc, backends: svc.backends.map((b) => ({ state: 'active' as const, role: 'primary' as const, ...b })) })),
    flowTable: { capacity: 4096, tcpIdleTimeoutS: 300, tcpClosingTimeoutS: 10, udpIdleTimeoutS: 30, halfOpenTimeoutS: 10, floodProtection: true },
    capture: { engine: 'batch', bufferMiB: 32, batchSize: 256 },
    safety: { allowHostForwarding: false, allowLocalVip: false },
    metrics: { listen: '127.0.0.1:9180' },
    admin: { socket: '/tmp/x.sock' },
    log: { level: 'info' },
    ...overrides,
  };
}

function hops(cfg: SluiceConfig, unresolved: string[] = []): Map<string, NextHop> {
  const m = new Map<string, NextHop>();
  for (const s of cfg.services) {
    for (const b of s.backends) {
      const ok = !unresolved.includes(b.address);
      m.set(b.address, { address: b.address, nextHop: b.address, dev: 'sl-lb0', mac: ok ? parseMac(macOf(b.address)) : null, problem: ok ? null : 'unresolved' });
    }
  }
  return m;
}

const iface = { name: 'sl-lb0', mac: parseMac(EGRESS_MAC), mtu: 1500, addresses: [{ family: 4 as const, address: '10.99.0.2' }, { family: 6 as const, address: 'fd00:99::2' }], allAddresses: ['10.99.0.2', 'fd00:99::2'] };

class Harness {
  readonly fwd: Forwarder;
  /** `extra`: for example the shared tables of data-plane workers (sharedTokens, sharedAffinity). */
  constructor(extra: Partial<ForwarderOptions> = {}) {
    this.fwd = new Forwarder({ flowCapacity: 4096, tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000, ...extra });
  }
  readonly sids = new IdAllocator(64);
  readonly bids = new IdAllocator(1024);
  readonly tx = Buffer.alloc(10240);
  generation = 0;
  apply(cfg: SluiceConfig, unresolved: string[] = [], down: string[] = []): void {
    this.fwd.apply(
      buildSpec({
        config: cfg,
        generation: ++this.generation,
        serviceIds: this.sids,
        backendIds: this.bids,
        nextHops: hops(cfg, unresolved),
        ingress: iface,
        egress: iface,
        healthy: (_s, a) => !down.includes(a),
      }),
    );
  }
  send(frame: Buffer, now = 1000): { len: number; out: Buffer } {
    const len = this.fwd.forward(frame, frame.length, this.tx, now);
    return { len, out: Buffer.from(this.tx.subarray(0, len)) };
  }
  drops(reason: keyof typeof Drop): number {
    return this.fwd.counters[DROPS_BASE + Drop[reason]];
  }
}

const tcp4 = (sport: number, flags = TCP_SYN, dport = 80, src = '10.99.1.2'): Buffer =>
  buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src, dst: '198.51.100.10' }, tcp: { sport, dport, flags }, payload: flags === TCP_SYN ? undefined : 'hello' });
const udp4 = (sport: number, dport = 53, dst = '198.51.100.10'): Buffer =>
  buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src: '10.99.1.2', dst }, udp: { sport, dport }, payload: 'query' });
const tcp6 = (sport: number): Buffer =>
  buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv6: { src: 'fd00:99:1::2', dst: '2001:db8:100::10' }, tcp: { sport, dport: 80, flags: TCP_SYN } });

describe('Forwarder: dsr-l2 rewrites only the MAC addresses', () => {
  let h: Harness;
  beforeEach(() => {
    h = new Harness();
    h.apply(config());
  });

  it.each([
    { name: 'IPv4 TCP SYN', frame: () => tcp4(40000), backends: ['10.99.0.11', '10.99.0.12', '10.99.0.13'] },
    { name: 'IPv6 TCP SYN', frame: () => tcp6(40001), backends: ['fd00:99::11', 'fd00:99::12'] },
    { name: 'IPv4 UDP on an all-ports service', frame: () => udp4(40002, 9999, '198.51.100.20'), backends: ['10.99.0.11'] },
  ])('$name', ({ frame, backends }) => {
    const f = frame();
    const { len, out } = h.send(f);
    expect(len).toBe(f.length);
    expect(formatMac(out, 6)).toBe(EGRESS_MAC);
    expect(backends.map(macOf)).toContain(formatMac(out, 0));
    expect(out.subarray(12).equals(f.subarray(12))).toBe(true);
  });

  it('every packet of a flow goes to the backend of its first packet', () => {
    const first = h.send(tcp4(41000)).out;
    for (const flags of [TCP_ACK, TCP_ACK, TCP_ACK | TCP_FIN]) {
      const { out } = h.send(tcp4(41000, flags));
      expect(formatMac(out, 0)).toBe(formatMac(first, 0));
    }
    expect(h.fwd.counters[G.flowsCreated]).toBe(1);
  });

  it('spreads 3000 flows over 3 equal backends within 10% of fair', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const mac = formatMac(h.send(tcp4(20000 + i)).out, 0);
      counts.set(mac, (counts.get(mac) ?? 0) + 1);
    }
    expect(counts.size).toBe(3);
    for (const n of counts.values()) expect(Math.abs(n - 1000)).toBeLessThan(100);
  });

  it('counts packets and bytes per backend', () => {
    const syn = tcp4(42000);
    const ack = tcp4(42000, TCP_ACK);
    const picked = formatMac(h.send(syn).out, 0);
    const address = ['10.99.0.11', '10.99.0.12', '10.99.0.13'].find((a) => macOf(a) === picked)!;
    h.send(ack);
    const bid = h.bids.idOf(`web|${address}`)!;
    expect(h.fwd.counters[backendCounter(bid, ENTITY.packets)]).toBe(2);
    expect(h.fwd.counters[backendCounter(bid, ENTITY.bytes)]).toBe(syn.length + ack.length);
    expect(h.fwd.counters[backendCounter(bid, ENTITY.flowsCreated)]).toBe(1);
  });
});

describe('Forwarder: drops are counted by reason, never thrown', () => {
  let h: Harness;
  beforeEach(() => {
    h = new Harness();
    h.apply(config());
  });

  it.each(MALFORMED_FRAMES.map((m) => ({ ...m })))('malformed: $name -> $reason', ({ frame, reason }) => {
    expect(h.send(frame).len).toBe(0);
    expect(h.fwd.counters[DROPS_BASE + DROP_REASONS.indexOf(reason)]).toBe(1);
  });

  it.each([
    { name: 'TCP to a port no service has', frame: () => tcp4(43000, TCP_SYN, 81), reason: 'no_service' as const },
    { name: 'UDP to an unknown VIP', frame: () => udp4(43001, 53, '198.51.100.99'), reason: 'no_service' as const },
  ])('$name', ({ frame, reason }) => {
    expect(h.send(frame()).len).toBe(0);
    expect(h.drops(reason)).toBe(1);
  });

  it('never sends a frame back to the MAC it came from', () => {
    const f = tcp4(44000);
    const picked = formatMac(h.send(f).out, 0);
    const again = tcp4(44000, TCP_ACK);
    parseMac(picked).forEach((b, i) => (again[6 + i] = b));
    expect(h.send(again).len).toBe(0);
    expect(h.drops('loop')).toBe(1);
  });

  it('a backend with no resolved next hop takes no new flows', () => {
    h.apply(config(), ['10.99.0.11', '10.99.0.12']);
    for (let i = 0; i < 200; i++) expect(formatMac(h.send(tcp4(45000 + i)).out, 0)).toBe(macOf('10.99.0.13'));
  });

  it('a service whose backends all have weight 0 drops new flows as no_backend', () => {
    const cfg = config();
    cfg.services[0].backends.forEach((b) => (b.weight = 0));
    h.apply(cfg);
    expect(h.send(tcp4(46000)).len).toBe(0);
    expect(h.drops('no_backend')).toBe(1);
  });
});

describe('Forwarder: ipip encapsulates toward the backend', () => {
  it('IPv4 in IPv4: outer header to the backend, inner packet unchanged', () => {
    const h = new Harness();
    h.apply(config());
    const f = udp4(47000);
    const { len, out } = h.send(f);
    expect(len).toBe(f.length + 20);
    const p = new ParsedPacket();
    expect(out.readUInt16BE(12)).toBe(0x0800);
    expect(out[14 + 9]).toBe(4); // protocol IPIP
    const dst = `${out[30]}.${out[31]}.${out[32]}.${out[33]}`;
    expect(['10.99.0.11', '10.99.0.12', '10.99.0.13']).toContain(dst);
    expect(`${out[26]}.${out[27]}.${out[28]}.${out[29]}`).toBe('10.99.0.2');
    expect(formatMac(out, 0)).toBe(macOf(dst));
    expect(out.subarray(34).equals(f.subarray(14))).toBe(true);
    // The outer header is a valid IPv4 header (checksum verified by the parser on a re-framed copy).
    const reframed = Buffer.concat([out.subarray(0, 14), out.subarray(34)]);
    expect(parseFrame(reframed, reframed.length, p)).toBe(Drop.ok);
  });

  it('counts encap_too_big and answers fragmentation needed when the outer header would exceed the egress MTU', () => {
    const h = new Harness();
    h.apply(config());
    const big = buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src: '10.99.1.2', dst: '198.51.100.10' }, udp: { sport: 1, dport: 53 }, payload: Buffer.alloc(1472) });
    const { len, out } = h.send(big);
    expect(h.drops('encap_too_big')).toBe(1);
    // Back to the client: ICMP type 3 code 4 from the VIP, next-hop MTU 1500 - 20 (test/fixtures/forward-golden.ts has the exact frame).
    expect(len).toBe(14 + 576);
    expect(formatMac(out, 0)).toBe(ROUTER_MAC);
    expect([out[14 + 9], out[34], out[35], out.readUInt16BE(40)]).toEqual([1, 3, 4, 1480]);
    expect(h.fwd.counters[G.icmpTooBigSent]).toBe(1);
  });
});

describe('Forwarder: generations keep established flows', () => {
  it('adding a backend and changing weights keeps every existing flow on its backend', () => {
    const h = new Harness();
    h.apply(config());
    const before = new Map<number, string>();
    for (let i = 0; i < 500; i++) before.set(i, formatMac(h.send(tcp4(30000 + i)).out, 0));
    const cfg = config({}, ['10.99.0.11', '10.99.0.12', '10.99.0.13', '10.99.0.14']);
    cfg.services[0].backends[0].weight = 3;
    h.apply(cfg);
    for (let i = 0; i < 500; i++) expect(formatMac(h.send(tcp4(30000 + i, TCP_ACK)).out, 0)).toBe(before.get(i));
    const fresh = new Set<string>();
    for (let i = 0; i < 500; i++) fresh.add(formatMac(h.send(tcp4(50000 + i)).out, 0));
    expect(fresh).toContain(macOf('10.99.0.14'));
  });

  it.each([
    { name: 'down (health check): its flows move to the current table', down: ['10.99.0.12'], drain: false, moves: true },
    { name: 'draining: its flows stay until they end', down: [] as string[], drain: true, moves: false },
  ])('a backend $name', ({ down, drain, moves }) => {
    const h = new Harness();
    h.apply(config());
    const before = new Map<number, string>();
    for (let i = 0; i < 300; i++) before.set(i, formatMac(h.send(tcp4(32000 + i)).out, 0));
    const cfg = config();
    if (drain) cfg.services[0].backends[1].state = 'draining';
    h.apply(cfg, [], down);
    let onB2 = 0;
    for (let i = 0; i < 300; i++) {
      const now = formatMac(h.send(tcp4(32000 + i, TCP_ACK)).out, 0);
      if (before.get(i) === macOf('10.99.0.12')) {
        onB2++;
        expect(now === macOf('10.99.0.12')).toBe(!moves);
      } else expect(now).toBe(before.get(i));
    }
    expect(onB2).toBeGreaterThan(50);
    // Either way, no new flow goes there.
    for (let i = 0; i < 200; i++) expect(formatMac(h.send(tcp4(33000 + i)).out, 0)).not.toBe(macOf('10.99.0.12'));
  });

  it('removing a backend moves only its flows; the others stay', () => {
    const h = new Harness();
    h.apply(config());
    const before = new Map<number, string>();
    for (let i = 0; i < 600; i++) before.set(i, formatMac(h.send(tcp4(31000 + i)).out, 0));
    h.apply(config({}, ['10.99.0.11', '10.99.0.13']));
    let moved = 0;
    for (let i = 0; i < 600; i++) {
      const now = formatMac(h.send(tcp4(31000 + i, TCP_ACK)).out, 0);
      if (before.get(i) === macOf('10.99.0.12')) {
        expect(now).not.toBe(macOf('10.99.0.12'));
        moved++;
      } else {
        expect(now).toBe(before.get(i));
      }
    }
    expect(moved).toBeGreaterThan(100);
  });
});

describe('Forwarder: MPTCP subflows follow their connection', () => {
  const opts = (bytes: number[]): Uint8Array => {
    const padded = [...bytes];
    while (padded.length % 4 !== 0) padded.push(1);
    return Uint8Array.from(padded);
  };
  const seg = (sport: number, flags: number, options: number[], src = '10.99.1.2', payload?: string): Buffer =>
    buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src, dst: '198.51.100.10' }, tcp: { sport, dport: 80, flags, options: opts(options) }, payload });
  const thirdAck = (sport: number, serverKey: readonly number[]): Buffer => seg(sport, TCP_ACK, optMpCapable({ version: 1, senderKey: CLIENT_KEY, receiverKey: serverKey }));
  const firstData = (sport: number, serverKey: readonly number[]): Buffer =>
    seg(sport, TCP_ACK | 0x08, optMpCapable({ version: 1, senderKey: CLIENT_KEY, receiverKey: serverKey, dataLevelLength: 5 }), '10.99.1.2', 'hello');
  const joinSyn = (sport: number, token: number, src = '10.99.3.2'): Buffer =>
    seg(sport, TCP_SYN, optMpJoinSyn({ backup: false, addressId: 2, token: [token >>> 24, (token >>> 16) & 255, (token >>> 8) & 255, token & 255], nonce: 7 }), src);
  const keyFor = (i: number): number[] => [0xa1, 0x60, 0xa0, 0xcf, 0x9a, 0xc5, (i >> 8) & 255, i & 255];

  it.each([
    { name: 'third ACK (20-byte MP_CAPABLE) teaches the token', learn: (sport: number, key: number[]) => thirdAck(sport, key) },
    { name: 'first data segment (22-byte form) when the third ACK was lost', learn: (sport: number, key: number[]) => firstData(sport, key) },
  ])('$name; 200 joins from another address reach the same backend', ({ learn }) => {
    const h = new Harness();
    h.apply(config());
    for (let i = 0; i < 200; i++) {
      const sport = 10000 + i;
      const first = formatMac(h.send(seg(sport, TCP_SYN, optMpCapable({ version: 1 }))).out, 0);
      expect(formatMac(h.send(learn(sport, keyFor(i))).out, 0)).toBe(first);
      const token = createHash('sha256').update(Buffer.from(keyFor(i))).digest().readUInt32BE(0);
      const { len, out } = h.send(joinSyn(20000 + i, token));
      expect(len).toBeGreaterThan(0);
      expect(formatMac(out, 0)).toBe(first);
    }
    expect(h.fwd.counters[G.mptcpJoinsSteered]).toBe(200);
    expect(h.fwd.counters[G.mptcpLearnedV1]).toBe(200);
  });

  it('the captured Linux key a160a0cf9ac55a3d learns token 464b4775', () => {
    const h = new Harness();
    h.apply(config());
    const first = formatMac(h.send(seg(30000, TCP_SYN, optMpCapable({ version: 1 }))).out, 0);
    h.send(thirdAck(30000, LINUX_SERVER_KEY));
    expect(formatMac(h.send(joinSyn(30001, LINUX_SERVER_TOKEN)).out, 0)).toBe(first);
  });

  it('retransmitted key-carrying ACKs are idempotent (one learn, no collision)', () => {
    const h = new Harness();
    h.apply(config());
    h.send(seg(31000, TCP_SYN, optMpCapable({ version: 1 })));
    for (let i = 0; i < 5; i++) h.send(thirdAck(31000, LINUX_SERVER_KEY));
    h.fwd.tick(2000, 1 << 16);
    expect(h.fwd.counters[G.mptcpLearnedV1]).toBe(1);
    expect(h.fwd.counters[G.mptcpCollisions]).toBe(0);
    expect(h.fwd.counters[G.mptcpTokensActive]).toBe(1);
  });

  it('the same token learned for another backend is a counted collision; the first owner keeps its joins', () => {
    const h = new Harness();
    h.apply(config());
    // Find two client ports whose connections land on different backends.
    const macs = new Map<string, number>();
    for (let p = 32000; macs.size < 2; p++) {
      const m = formatMac(h.send(seg(p, TCP_SYN, optMpCapable({ version: 1 }))).out, 0);
      if (!macs.has(m)) macs.set(m, p);
    }
    const [[ownerMac, ownerPort], [, otherPort]] = [...macs];
    h.send(thirdAck(ownerPort, LINUX_SERVER_KEY));
    // Linux repeats MP_CAPABLE until the server's first DSS: the collision is still one.
    for (let i = 0; i < 4; i++) h.send(thirdAck(otherPort, LINUX_SERVER_KEY));
    h.fwd.tick(2000, 1 << 16);
    expect(h.fwd.counters[G.mptcpCollisions]).toBe(1);
    expect(formatMac(h.send(joinSyn(33000, LINUX_SERVER_TOKEN)).out, 0)).toBe(ownerMac);
  });

  it('two workers over one shared token table: a join the other worker receives reaches its connection’s backend', () => {
    // Issue 11: the kernel's fanout hash gives a join (another 5-tuple) to any worker. Run with the
    // shared table and, to show the test can fail, with each worker's own table.
    const run = (shared: boolean): { steered: number; unknown: number; same: number } => {
      const buffer = MptcpTokenTable.sharedBuffer(1 << 12);
      const [a, b] = [0, 1].map(() => new Harness(shared ? { sharedTokens: buffer } : {}));
      a.apply(config());
      b.apply(config());
      let same = 0;
      for (let i = 0; i < 50; i++) {
        const sport = 12000 + i;
        const first = formatMac(a.send(seg(sport, TCP_SYN, optMpCapable({ version: 1 }))).out, 0);
        a.send(thirdAck(sport, keyFor(i)));
        const token = createHash('sha256').update(Buffer.from(keyFor(i))).digest().readUInt32BE(0);
        const { len, out } = b.send(joinSyn(22000 + i, token));
        if (len > 0 && formatMac(out, 0) === first) same++;
      }
      return { steered: b.fwd.counters[G.mptcpJoinsSteered], unknown: b.fwd.counters[G.mptcpJoinsUnknown], same };
    };
    const on = run(true);
    const off = run(false);
    console.log(`joins on the other worker: shared table ${JSON.stringify(on)}; private tables ${JSON.stringify(off)}`);
    expect(on).toEqual({ steered: 50, unknown: 0, same: 50 });
    expect(off.steered).toBe(0);
  });

  it.each([
    { name: 'drop (default): counted and not forwarded', policy: 'drop' as const, forwarded: false },
    { name: 'hash: balanced like a new flow', policy: 'hash' as const, forwarded: true },
  ])('unknown token, policy $name', ({ policy, forwarded }) => {
    const h = new Harness();
    const cfg = config();
    cfg.services[0].mptcpUnknownJoin = policy;
    h.apply(cfg);
    expect(h.send(joinSyn(34000, 0xdeadbeef)).len > 0).toBe(forwarded);
    expect(h.fwd.counters[G.mptcpJoinsUnknown]).toBe(1);
    expect(h.drops('mptcp_join_unknown_token')).toBe(forwarded ? 0 : 1);
  });

  it('with "mptcp": false joins are plain new flows', () => {
    const h = new Harness();
    const cfg = config();
    cfg.services[0].mptcp = false;
    h.apply(cfg);
    h.send(seg(35000, TCP_SYN, optMpCapable({ version: 1 })));
    h.send(thirdAck(35000, LINUX_SERVER_KEY));
    expect(h.send(joinSyn(35001, LINUX_SERVER_TOKEN)).len).toBeGreaterThan(0);
    expect(h.fwd.counters[G.mptcpLearnedV1] + h.fwd.counters[G.mptcpJoinsSteered] + h.fwd.counters[G.mptcpJoinsUnknown]).toBe(0);
  });

  it('a malformed MPTCP option is counted and the packet forwarded as plain TCP', () => {
    const h = new Harness();
    h.apply(config());
    // MP_CAPABLE of length 13 on an ACK: no valid form.
    const bad = seg(36000, TCP_ACK, [30, 13, 0x01, 0x01, ...CLIENT_KEY, 0]);
    expect(h.send(bad).len).toBeGreaterThan(0);
    expect(h.fwd.counters[G.mptcpMalformed]).toBe(1);
  });

  it('plain TCP with timestamps is unaffected', () => {
    const h = new Harness();
    h.apply(config());
    const syn = seg(37000, TCP_SYN, [...optNop(), ...optNop(), ...optTimestamps(1, 0)]);
    expect(h.send(syn).len).toBe(syn.length);
    expect(h.fwd.counters[G.mptcpMalformed] + h.fwd.counters[G.mptcpJoinsUnknown]).toBe(0);
  });
});

describe('Forwarder: client affinity (source-ip)', () => {
  const withAffinity = (prefix4 = 32, backends?: string[]): SluiceConfig => {
    const cfg = config({}, backends);
    cfg.services[0].affinity = { mode: 'source-ip', timeoutS: 300, ipv4Prefix: prefix4, ipv6Prefix: 64 };
    return cfg;
  };
  const from = (src: string, sport: number): Buffer => tcp4(sport, TCP_SYN, 80, src);

  it('50 connections from one client, different source ports, land on one backend', () => {
    const h = new Harness();
    h.apply(withAffinity());
    const macs = new Set<string>();
    for (let i = 0; i < 50; i++) macs.add(formatMac(h.send(from('10.99.1.2', 40000 + i)).out, 0));
    expect(macs.size).toBe(1);
  });

  it('different clients still spread over every backend', () => {
    const h = new Harness();
    h.apply(withAffinity());
    const macs = new Set<string>();
    for (let i = 0; i < 60; i++) macs.add(formatMac(h.send(from(`10.98.${i}.7`, 40000)).out, 0));
    expect(macs.size).toBe(3);
  });

  it.each([
    { name: '/24: two hosts of one subnet share a backend', prefix: 24, a: '10.99.1.2', b: '10.99.1.200', same: true },
    { name: '/32: the key is the host', prefix: 32, a: '10.99.1.2', b: '10.99.1.2', same: true },
  ])('$name', ({ prefix, a, b, same }) => {
    const h = new Harness();
    h.apply(withAffinity(prefix));
    const x = formatMac(h.send(from(a, 41000)).out, 0);
    const y = formatMac(h.send(from(b, 41001)).out, 0);
    expect(x === y).toBe(same);
  });

  it('two instances with the same config agree on every client without sharing state', () => {
    const one = new Harness();
    const two = new Harness();
    one.apply(withAffinity());
    two.apply(withAffinity());
    for (let i = 0; i < 100; i++) {
      const src = `10.97.${i}.${i + 1}`;
      expect(formatMac(two.send(from(src, 50000 + i)).out, 0)).toBe(formatMac(one.send(from(src, 42000 + i)).out, 0));
    }
  });

  it('the entry outlives a backend addition; a removed backend releases its clients', () => {
    const h = new Harness();
    h.apply(withAffinity());
    const before = new Map<string, string>();
    for (let i = 0; i < 90; i++) before.set(`10.96.${i}.1`, formatMac(h.send(from(`10.96.${i}.1`, 43000)).out, 0));
    h.apply(withAffinity(32, ['10.99.0.11', '10.99.0.12', '10.99.0.13', '10.99.0.14']));
    for (const [src, mac] of before) expect(formatMac(h.send(from(src, 43001)).out, 0)).toBe(mac);
    h.apply(withAffinity(32, ['10.99.0.11', '10.99.0.13', '10.99.0.14']));
    let moved = 0;
    for (const [src, mac] of before) {
      const now = formatMac(h.send(from(src, 43002)).out, 0);
      if (mac === macOf('10.99.0.12')) {
        expect(now).not.toBe(mac);
        moved++;
      } else expect(now).toBe(mac);
    }
    expect(moved).toBeGreaterThan(0);
  });

  it('entries expire after timeoutS of no new connection', () => {
    const h = new Harness();
    const cfg = withAffinity();
    cfg.services[0].affinity!.timeoutS = 10;
    h.apply(cfg);
    h.send(from('10.99.1.2', 44000), 1000);
    h.fwd.tick(2000, 1 << 20);
    expect(h.fwd.affinity.size).toBe(1);
    h.fwd.tick(12_000, 1 << 20);
    expect(h.fwd.affinity.size).toBe(0);
  });
});

describe('Forwarder: owner queries (several instances)', () => {
  type Q = { qid: number; kind: number; key: Uint8Array };
  const setup = (): { h: Harness; queries: Q[]; sent: Buffer[] } => {
    const h = new Harness();
    h.apply(config());
    const queries: Q[] = [];
    h.fwd.setOwnerQuery((qid, kind, key) => queries.push({ qid, kind, key }), 4);
    return { h, queries, sent: [] };
  };
  const backendIdOf = (h: Harness, address: string): number => h.bids.idOf(`web|${address}`)!;

  it('a SYN never asks: new connections take the table', () => {
    const { h, queries } = setup();
    expect(h.send(tcp4(60000)).len).toBeGreaterThan(0);
    expect(queries).toHaveLength(0);
  });

  it('a mid-connection packet with no state is held, its owner asked, then released to the answered backend', () => {
    const { h, queries } = setup();
    expect(h.send(tcp4(60001, TCP_ACK)).len).toBe(0);
    expect(h.send(tcp4(60001, TCP_ACK)).len).toBe(0);
    expect(queries).toHaveLength(1);
    expect(queries[0].kind).toBe(0);
    expect(queries[0].key).toHaveLength(13);
    expect(h.fwd.counters[G.heldPackets]).toBe(2);
    const out: string[] = [];
    const tx = Buffer.alloc(2048);
    h.fwd.answer(queries[0].qid, backendIdOf(h, '10.99.0.13'), 1010, tx, (len) => out.push(formatMac(tx, 0) + '/' + len));
    expect(out).toHaveLength(2);
    expect(out.every((o) => o.startsWith(macOf('10.99.0.13')))).toBe(true);
    // The flow is now known: no second query, same backend.
    expect(formatMac(h.send(tcp4(60001, TCP_ACK)).out, 0)).toBe(macOf('10.99.0.13'));
    expect(queries).toHaveLength(1);
    expect(h.fwd.counters[G.ownerHits]).toBe(1);
  });

  it('no answer in time: asked once more (frames held), then the table decides and the held frames go out', () => {
    const { h, queries } = setup();
    h.send(tcp4(60002, TCP_ACK), 1000);
    const tx = Buffer.alloc(2048);
    let sent = 0;
    h.fwd.expireQueries(1049, tx, () => sent++);
    expect(sent).toBe(0);
    h.fwd.expireQueries(1050, tx, () => sent++);
    expect(sent).toBe(0);
    expect(queries).toHaveLength(2);
    h.fwd.expireQueries(1050 + RETRY_DEADLINE_MS, tx, () => sent++);
    expect(sent).toBe(1);
    expect(h.fwd.counters[G.ownerQueryTimeouts]).toBe(2);
    expect(queries).toHaveLength(2);
  });

  it('holds at most holdPackets frames per flow; the rest are counted drops', () => {
    const { h } = setup();
    for (let i = 0; i < 6; i++) h.send(tcp4(60003, TCP_ACK));
    expect(h.fwd.counters[G.heldPackets]).toBe(4);
    expect(h.drops('hold_overflow')).toBe(2);
  });

  it('an answer naming a backend that is not in this service falls back to the table', () => {
    const { h, queries } = setup();
    h.send(tcp4(60004, TCP_ACK));
    const tx = Buffer.alloc(2048);
    let mac = '';
    h.fwd.answer(queries[0].qid, 9999, 1000, tx, () => (mac = formatMac(tx, 0)));
    expect(['10.99.0.11', '10.99.0.12', '10.99.0.13'].map(macOf)).toContain(mac);
    expect(h.fwd.counters[G.ownerMisses]).toBe(1);
  });

  it('an MP_JOIN with an unknown token asks the token owner and learns the answer', () => {
    const { h, queries } = setup();
    const join = buildFrame({
      eth: { src: ROUTER_MAC, dst: EGRESS_MAC },
      ipv4: { src: '10.99.3.2', dst: '198.51.100.10' },
      tcp: { sport: 61000, dport: 80, flags: TCP_SYN, options: Uint8Array.from([...optMpJoinSyn({ backup: false, addressId: 2, token: [0x46, 0x4b, 0x47, 0x75], nonce: 1 })]) },
    });
    expect(h.send(join).len).toBe(0);
    expect(queries[0].kind).toBe(1);
    expect([...queries[0].key]).toEqual([0x46, 0x4b, 0x47, 0x75]);
    const tx = Buffer.alloc(2048);
    let mac = '';
    h.fwd.answer(queries[0].qid, backendIdOf(h, '10.99.0.12'), 1000, tx, () => (mac = formatMac(tx, 0)));
    expect(mac).toBe(macOf('10.99.0.12'));
    expect(h.fwd.counters[G.mptcpJoinsSteered]).toBe(1);
    // A second join of the same connection is steered locally now.
    const join2 = Buffer.from(join);
    join2.writeUInt16BE(61001, 34);
    expect(formatMac(h.send(join2).out, 0)).toBe(macOf('10.99.0.12'));
    expect(queries).toHaveLength(1);
  });

  it.each([
    { name: 'a mid-connection TCP packet: 50 ms', join: false, holdMs: QUERY_DEADLINE_MS },
    { name: 'an MP_JOIN SYN (its token may be on its way to the owner): 150 ms', join: true, holdMs: TOKEN_QUERY_DEADLINE_MS },
  ])('how long a frame waits for its owner: $name', ({ join, holdMs }) => {
    const { h, queries } = setup();
    const frame = join
      ? buildFrame({
          eth: { src: ROUTER_MAC, dst: EGRESS_MAC },
          ipv4: { src: '10.99.3.2', dst: '198.51.100.10' },
          tcp: { sport: 61500, dport: 80, flags: TCP_SYN, options: Uint8Array.from([...optMpJoinSyn({ backup: false, addressId: 2, token: [1, 2, 3, 4], nonce: 1 })]) },
        })
      : tcp4(60010, TCP_ACK);
    expect(h.send(frame, 1000).len).toBe(0);
    const tx = Buffer.alloc(2048);
    h.fwd.expireQueries(1000 + holdMs - 1, tx, () => undefined);
    expect(h.fwd.counters[G.ownerQueryTimeouts]).toBe(0);
    h.fwd.expireQueries(1000 + holdMs, tx, () => undefined);
    expect(h.fwd.counters[G.ownerQueryTimeouts]).toBe(1);
    expect(queries[0].kind).toBe(join ? 1 : 0);
  });

  it('a late answer for an earlier query of a reused slot is ignored', () => {
    const { h, queries } = setup();
    h.send(tcp4(63000, TCP_ACK), 1000);
    const tx = Buffer.alloc(2048);
    // Each query is asked once more after its first deadline; both deadlines pass.
    h.fwd.expireQueries(1100, tx, () => undefined);
    h.fwd.expireQueries(1300, tx, () => undefined);
    // Enough new queries to come round to the first slot again.
    for (let i = 1; i <= 256; i++) {
      h.send(tcp4(63000 + i, TCP_ACK), 1300);
      h.fwd.expireQueries(1400 + i, tx, () => undefined);
      h.fwd.expireQueries(1600 + i, tx, () => undefined);
    }
    const reuse = queries.find((q, i) => i > 0 && q.qid % 256 === queries[0].qid % 256)!;
    expect(reuse).toBeDefined();
    h.send(tcp4(64000, TCP_ACK), 2000);
    const live = queries[queries.length - 1];
    let sent = 0;
    h.fwd.answer(queries[0].qid, backendIdOf(h, '10.99.0.13'), 2001, tx, () => sent++);
    expect(sent).toBe(0);
    expect(h.fwd.pendingQueries).toBe(1);
    h.fwd.answer(live.qid, backendIdOf(h, '10.99.0.13'), 2002, tx, () => sent++);
    expect(sent).toBe(1);
  });

  it('a learned token and a steered join are published at once (their joins reach other instances)', () => {
    const h = new Harness();
    h.apply(config());
    const published: { kind: number; len: number }[] = [];
    h.fwd.setPublishNow((kind, key) => published.push({ kind, len: key.length }));
    const withOpts = (sport: number, flags: number, o: number[], src = '10.99.1.2'): Buffer => {
      while (o.length % 4 !== 0) o.push(1);
      return buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src, dst: '198.51.100.10' }, tcp: { sport, dport: 80, flags, options: Uint8Array.from(o) } });
    };
    h.send(withOpts(65000, TCP_SYN, optMpCapable({ version: 1 })));
    h.send(withOpts(65000, TCP_ACK, optMpCapable({ version: 1, senderKey: CLIENT_KEY, receiverKey: LINUX_SERVER_KEY })));
    h.send(withOpts(65000, TCP_ACK, optMpCapable({ version: 1, senderKey: CLIENT_KEY, receiverKey: LINUX_SERVER_KEY })));
    expect(published).toEqual([{ kind: 1, len: 4 }]);
    h.send(withOpts(65001, TCP_SYN, optMpJoinSyn({ backup: false, addressId: 2, token: [0x46, 0x4b, 0x47, 0x75], nonce: 3 }), '10.99.3.2'));
    expect(published).toEqual([{ kind: 1, len: 4 }, { kind: 0, len: 13 }]);
  });

  it('publishable: flows whose backend differs from the current table, and every token', () => {
    const { h } = setup();
    h.fwd.setOwnerQuery(null);
    for (let i = 0; i < 300; i++) h.send(tcp4(62000 + i));
    const none: number[] = [];
    h.fwd.publishable(1000, (kind) => none.push(kind));
    expect(none).toHaveLength(0);
    h.apply(config({}, ['10.99.0.11', '10.99.0.12', '10.99.0.13', '10.99.0.14']));
    const flows: number[] = [];
    h.fwd.publishable(1000, (kind, _key, be) => kind === 0 && flows.push(be));
    // About a quarter of the flows would now map to the new backend: exactly those are published.
    expect(flows.length).toBeGreaterThan(30);
    expect(flows.length).toBeLessThan(150);
    expect(flows).not.toContain(h.bids.idOf('web|10.99.0.14'));
  });
});
