import { describe, expect, it } from 'vitest';
import {
  DEFAULT_HALF_OPEN_MS,
  FLOW_ACTIVE,
  FLOW_CLOSING,
  FLOW_EMPTY,
  FLOW_KIND_CLOSING,
  FLOW_KIND_ESTABLISHED,
  FLOW_KIND_HALF_OPEN,
  FLOW_KIND_OTHER,
  FLOW_MAX_CAPACITY,
  FLOW_TOKEN_COLLIDED,
  FLOW_TOKEN_HELD,
  FLOW_TOKEN_NONE,
  FlowTable,
  type FlowEntryInfo,
  type FlowTimeouts,
} from '../../src/dataplane/flow-table.js';
import { copyFlowKey, flowHash } from '../../src/hash/murmur3.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../src/packet/parsed-packet.js';
import { xorshift32 as rng } from '../fixtures/random.js';
import { SEED, T0, insertFlow, lookupFlow, packet, randomFlow, tcp4, v4, type Flow } from '../fixtures/flow-packets.js';

const TIMEOUTS: FlowTimeouts = { tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000 };

describe('FlowTable: construction', () => {
  const capacities = [
    { requested: 1, capacity: 1 },
    { requested: 3, capacity: 4 },
    { requested: 16, capacity: 16 },
    { requested: 1000, capacity: 1024 },
    { requested: 262144, capacity: 262144 },
    { requested: 262145, capacity: 524288 },
  ];
  it.each(capacities)('capacity $requested rounds up to $capacity, with at least capacity + 1/16 slots', ({ requested, capacity }) => {
    const t = new FlowTable(requested, TIMEOUTS);
    expect(t.capacity).toBe(capacity);
    expect(t.slots).toBeGreaterThanOrEqual(capacity + capacity / 16);
    expect(t.timeouts.halfOpenMs).toBe(DEFAULT_HALF_OPEN_MS);
  });

  const bad = [
    { name: 'zero capacity', capacity: 0, timeouts: TIMEOUTS, share: undefined },
    { name: 'fractional capacity', capacity: 10.5, timeouts: TIMEOUTS, share: undefined },
    { name: 'capacity above the maximum', capacity: FLOW_MAX_CAPACITY + 1, timeouts: TIMEOUTS, share: undefined },
    { name: 'zero tcp idle timeout', capacity: 16, timeouts: { ...TIMEOUTS, tcpIdleMs: 0 }, share: undefined },
    { name: 'NaN closing timeout', capacity: 16, timeouts: { ...TIMEOUTS, tcpClosingMs: Number.NaN }, share: undefined },
    { name: 'infinite udp timeout', capacity: 16, timeouts: { ...TIMEOUTS, udpIdleMs: Number.POSITIVE_INFINITY }, share: undefined },
    { name: 'negative half-open timeout', capacity: 16, timeouts: { ...TIMEOUTS, halfOpenMs: -1 }, share: undefined },
    { name: 'timeout past 2^31 ms', capacity: 16, timeouts: { ...TIMEOUTS, tcpIdleMs: 2 ** 31 }, share: undefined },
    { name: 'half-open share 0', capacity: 16, timeouts: TIMEOUTS, share: 0 },
    { name: 'half-open share above 1', capacity: 16, timeouts: TIMEOUTS, share: 1.5 },
  ];
  it.each(bad)('rejects $name', ({ capacity, timeouts, share }) => {
    expect(() => new FlowTable(capacity, timeouts, { halfOpenShare: share })).toThrow(RangeError);
  });
});

describe('FlowTable: keys', () => {
  const flows: { name: string; flow: Flow }[] = [
    { name: 'IPv4 TCP', flow: tcp4('192.0.2.10', 40000, '198.51.100.1', 80) },
    { name: 'IPv4 UDP', flow: { ...tcp4('192.0.2.10', 5353, '198.51.100.1', 53), proto: 17 } },
    {
      name: 'IPv6 TCP',
      flow: { v: 6, proto: 6, src: [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1], dst: [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 2], sport: 1234, dport: 443 },
    },
    {
      name: 'IPv6 UDP',
      flow: { v: 6, proto: 17, src: Array.from({ length: 16 }, (_, i) => i * 17), dst: Array.from({ length: 16 }, (_, i) => 255 - i), sport: 1, dport: 65535 },
    },
  ];
  it.each(flows)('lookup after insert: $name', ({ flow }) => {
    const t = new FlowTable(1024, TIMEOUTS);
    expect(lookupFlow(t, flow, T0)).toBe(-1);
    const slot = insertFlow(t, flow, T0, 42, undefined, 5, 9);
    expect(slot).toBeGreaterThanOrEqual(0);
    expect(lookupFlow(t, flow, T0 + 1)).toBe(slot);
    expect(t.backendOf(slot)).toBe(42);
    expect(t.serviceOf(slot)).toBe(5);
    expect(t.generationOf(slot)).toBe(9);
    expect(t.stateOf(slot)).toBe(FLOW_ACTIVE);
    expect(t.ipVersionOf(slot)).toBe(flow.v);
    expect(t.protocolOf(slot)).toBe(flow.proto);
    expect(t.size).toBe(1);
    expect(t.inserts).toBe(1);
  });

  const base = tcp4('10.0.0.1', 1000, '10.0.0.2', 80);
  // An IPv6 flow whose addresses start with the IPv4 ones, same ports and protocol.
  const v6Twin: Flow = { ...base, v: 6, src: [...base.src, ...Array(12).fill(0)], dst: [...base.dst, ...Array(12).fill(0)] };
  const v6Other: Flow = { ...v6Twin, src: [...v6Twin.src.slice(0, 15), 1] };
  const v6OtherDst: Flow = { ...v6Twin, dst: [...v6Twin.dst.slice(0, 8), 9, ...v6Twin.dst.slice(9)] };
  const distinct: { name: string; a: Flow; b: Flow }[] = [
    { name: 'IPv4 vs IPv6 with the same leading address bytes and ports', a: base, b: v6Twin },
    { name: 'both directions of one connection', a: base, b: { ...base, src: base.dst, dst: base.src, sport: base.dport, dport: base.sport } },
    { name: 'TCP vs UDP', a: base, b: { ...base, proto: 17 } },
    { name: 'source port', a: base, b: { ...base, sport: 1001 } },
    { name: 'destination port', a: base, b: { ...base, dport: 81 } },
    { name: 'swapped ports only', a: base, b: { ...base, sport: 80, dport: 1000 } },
    { name: 'source address', a: base, b: { ...base, src: v4('10.0.0.3') } },
    { name: 'destination address', a: base, b: { ...base, dst: v4('10.0.1.2') } },
    { name: 'IPv6 last source byte', a: v6Twin, b: v6Other },
    { name: 'IPv6 middle destination byte', a: v6Twin, b: v6OtherDst },
    // One byte in each 32-bit word of either IPv6 address.
    ...[0, 5, 10, 15].flatMap((byte) => [
      { name: `IPv6 source byte ${byte} only`, a: v6Twin, b: { ...v6Twin, src: v6Twin.src.map((x, i) => (i === byte ? x ^ 0x80 : x)) } },
      { name: `IPv6 destination byte ${byte} only`, a: v6Twin, b: { ...v6Twin, dst: v6Twin.dst.map((x, i) => (i === byte ? x ^ 0x80 : x)) } },
    ]),
  ];
  const hashModes = [
    { mode: 'real flow hashes', forced: false },
    { mode: 'one forced hash (same probe window)', forced: true },
  ];
  for (const { mode, forced } of hashModes) {
    it.each(distinct)(`distinct keys (${mode}): $name`, ({ a, b }) => {
      const t = new FlowTable(256, TIMEOUTS);
      const h = forced ? 77 : undefined;
      const sa = insertFlow(t, a, T0, 1, h);
      expect(lookupFlow(t, b, T0, h)).toBe(-1);
      const sb = insertFlow(t, b, T0, 2, h);
      expect(sb).not.toBe(sa);
      expect(t.backendOf(lookupFlow(t, a, T0, h))).toBe(1);
      expect(t.backendOf(lookupFlow(t, b, T0, h))).toBe(2);
      expect(t.size).toBe(2);
    });
  }

  it('insert of a key already present replaces it in place', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const s1 = insertFlow(t, base, T0, 1);
    const s2 = insertFlow(t, base, T0 + 5, 2, undefined, 4, 8);
    expect(s2).toBe(s1);
    expect(t.size).toBe(1);
    expect(t.backendOf(s2)).toBe(2);
    expect(t.serviceOf(s2)).toBe(4);
    expect(t.createdOf(s2)).toBe(T0 + 5);
  });

  it('setBackend changes the backend of record', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const s = insertFlow(t, base, T0, 1);
    t.setBackend(s, 99);
    expect(t.backendOf(lookupFlow(t, base, T0))).toBe(99);
  });

  it.each(flows)('keyOf and flowHashOf reproduce the canonical key and flow hash: $name', ({ flow }) => {
    const t = new FlowTable(64, TIMEOUTS);
    const s = insertFlow(t, flow, T0, 1);
    const { frame, p } = packet(flow);
    const expected = new Uint8Array(37);
    const len = copyFlowKey(frame, p, expected);
    const got = new Uint8Array(37);
    expect(t.keyOf(s, got)).toBe(len);
    expect(Array.from(got.subarray(0, len))).toEqual(Array.from(expected.subarray(0, len)));
    for (const seed of [0, 1, SEED, 0xffffffff]) expect(t.flowHashOf(s, seed)).toBe(flowHash(frame, p, seed));
  });
});

describe('FlowTable: fingerprint collisions (one forced hash for every flow)', () => {
  // The stored 32-bit hash is only a fingerprint: flows that share it must still be told apart by
  // their full keys, whether they sit in the buckets or in the stash.
  const counts = [{ flows: 2 }, { flows: 16 }, { flows: 30 }];
  it.each(counts)('$flows flows with one hash: each found with its own backend; absent keys with that hash miss', ({ flows: n }) => {
    const t = new FlowTable(1024, TIMEOUTS);
    const next = rng(n);
    const hash = 0xdeadbeef;
    const flows = Array.from({ length: n }, () => randomFlow(next));
    const slots = flows.map((f, i) => insertFlow(t, f, T0, i, hash));
    expect(new Set(slots).size).toBe(n);
    expect(t.evictions).toBe(0);
    expect(t.stashed).toBe(Math.max(0, n - 16));
    flows.forEach((f, i) => expect(t.backendOf(lookupFlow(t, f, T0 + 1, hash))).toBe(i));
    for (let i = 0; i < 200; i++) expect(lookupFlow(t, randomFlow(next), T0 + 1, hash)).toBe(-1);
    // A near miss of each present key (one port bit) with the same hash.
    for (const f of flows) expect(lookupFlow(t, { ...f, sport: f.sport ^ 1 }, T0 + 1, hash)).toBe(-1);
  });

  it('keys differing only in the destination address (the shared destination table) are distinct', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const a = tcp4('192.0.2.1', 1000, '198.51.100.1', 80);
    const b = tcp4('192.0.2.1', 1000, '198.51.100.2', 80);
    insertFlow(t, a, T0, 1, 42);
    expect(lookupFlow(t, b, T0, 42)).toBe(-1);
    insertFlow(t, b, T0, 2, 42);
    expect(t.backendOf(lookupFlow(t, a, T0, 42))).toBe(1);
    expect(t.backendOf(lookupFlow(t, b, T0, 42))).toBe(2);
  });
});

describe('FlowTable: timeouts and kinds (fake clock)', () => {
  const cases: { name: string; proto: number; insertFlags: number; flags: number; timeout: number; state: number; kind: number }[] = [
    { name: 'TCP idle', proto: 6, insertFlags: TCP_ACK, flags: TCP_ACK | TCP_PSH, timeout: TIMEOUTS.tcpIdleMs, state: FLOW_ACTIVE, kind: FLOW_KIND_ESTABLISHED },
    { name: 'TCP mid-connection insert (no SYN) is established', proto: 6, insertFlags: TCP_ACK, flags: 0, timeout: TIMEOUTS.tcpIdleMs, state: FLOW_ACTIVE, kind: FLOW_KIND_ESTABLISHED },
    { name: 'TCP SYN only, no flood: half-open, TCP idle timeout', proto: 6, insertFlags: TCP_SYN, flags: TCP_SYN, timeout: TIMEOUTS.tcpIdleMs, state: FLOW_ACTIVE, kind: FLOW_KIND_HALF_OPEN },
    { name: 'TCP SYN then ACK: established', proto: 6, insertFlags: TCP_SYN, flags: TCP_ACK, timeout: TIMEOUTS.tcpIdleMs, state: FLOW_ACTIVE, kind: FLOW_KIND_ESTABLISHED },
    { name: 'TCP SYN then SYN+ACK stays half-open', proto: 6, insertFlags: TCP_SYN, flags: TCP_SYN | TCP_ACK, timeout: TIMEOUTS.tcpIdleMs, state: FLOW_ACTIVE, kind: FLOW_KIND_HALF_OPEN },
    { name: 'TCP closing after FIN', proto: 6, insertFlags: TCP_ACK, flags: TCP_FIN | TCP_ACK, timeout: TIMEOUTS.tcpClosingMs, state: FLOW_CLOSING, kind: FLOW_KIND_CLOSING },
    { name: 'TCP closing after RST', proto: 6, insertFlags: TCP_ACK, flags: TCP_RST, timeout: TIMEOUTS.tcpClosingMs, state: FLOW_CLOSING, kind: FLOW_KIND_CLOSING },
    { name: 'half-open then RST: closing', proto: 6, insertFlags: TCP_SYN, flags: TCP_RST, timeout: TIMEOUTS.tcpClosingMs, state: FLOW_CLOSING, kind: FLOW_KIND_CLOSING },
    { name: 'UDP idle', proto: 17, insertFlags: 0, flags: 0, timeout: TIMEOUTS.udpIdleMs, state: FLOW_ACTIVE, kind: FLOW_KIND_OTHER },
    { name: 'other protocol (ICMP) uses the UDP timeout', proto: 1, insertFlags: 0, flags: 0, timeout: TIMEOUTS.udpIdleMs, state: FLOW_ACTIVE, kind: FLOW_KIND_OTHER },
  ];
  it.each(cases)('$name: alive until idle reaches the timeout, then absent and freed', ({ proto, insertFlags, flags, timeout, state, kind }) => {
    const t = new FlowTable(64, TIMEOUTS);
    const flow: Flow = { ...tcp4('10.1.1.1', 5555, '10.2.2.2', 443), proto };
    const s = insertFlow(t, flow, T0, 1, undefined, 3, 7, insertFlags);
    t.touch(s, T0 + 1000, flags);
    expect(t.stateOf(s)).toBe(state);
    expect(t.kindOf(s)).toBe(kind);
    expect(t.halfOpen).toBe(kind === FLOW_KIND_HALF_OPEN ? 1 : 0);
    const seen = T0 + 1000;
    expect(lookupFlow(t, flow, seen + timeout - 1)).toBe(s);
    expect(t.expirations).toBe(0);
    expect(lookupFlow(t, flow, seen + timeout)).toBe(-1);
    expect(t.expirations).toBe(1);
    expect(t.size).toBe(0);
    expect(t.halfOpen).toBe(0);
    expect(t.stateOf(s)).toBe(FLOW_EMPTY);
  });

  it.each(cases)('$name: touch refreshes lastSeen', ({ proto, insertFlags, flags, timeout }) => {
    const t = new FlowTable(64, TIMEOUTS);
    const flow: Flow = { ...tcp4('10.1.1.1', 5555, '10.2.2.2', 443), proto };
    const s = insertFlow(t, flow, T0, 1, undefined, 3, 7, insertFlags);
    t.touch(s, T0, flags);
    t.touch(s, T0 + timeout - 1, flags);
    expect(t.lastSeenOf(s)).toBe(T0 + timeout - 1);
    expect(lookupFlow(t, flow, T0 + 2 * timeout - 2)).toBe(s);
  });

  const pressure = [
    { name: 'below half the share: the TCP idle timeout', halfOpen: 7, timeout: TIMEOUTS.tcpIdleMs },
    { name: 'at half the share (a flood): the half-open timeout', halfOpen: 8, timeout: 2500 },
  ];
  it.each(pressure)('half-open entries, $halfOpen of a share of 16, $name', ({ halfOpen, timeout }) => {
    const t = new FlowTable(64, { ...TIMEOUTS, halfOpenMs: 2500 }, { halfOpenShare: 0.25 });
    expect(t.halfOpenLimit).toBe(16);
    const flows = Array.from({ length: halfOpen }, (_, i) => tcp4('10.1.1.1', 5000 + i, '10.2.2.2', 443));
    const slots = flows.map((f) => insertFlow(t, f, T0, 1, undefined, 3, 7, TCP_SYN));
    expect(t.halfOpen).toBe(halfOpen);
    expect(lookupFlow(t, flows[0], T0 + timeout - 1)).toBe(slots[0]);
    expect(lookupFlow(t, flows[0], T0 + timeout)).toBe(-1);
    expect(DEFAULT_HALF_OPEN_MS).toBe(10_000);
  });

  it('closing is not undone by later packets', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const flow = tcp4('10.1.1.1', 5555, '10.2.2.2', 443);
    const s = insertFlow(t, flow, T0, 1);
    t.touch(s, T0, TCP_FIN);
    t.touch(s, T0 + 1, TCP_ACK);
    expect(t.stateOf(s)).toBe(FLOW_CLOSING);
  });

  it('an expired entry in a full window is reused by insert without counting an eviction', () => {
    const t = new FlowTable(1024, TIMEOUTS);
    const next = rng(8);
    const hash = 5;
    const flows = Array.from({ length: 16 }, () => ({ ...randomFlow(next), proto: 17 }));
    const slots = flows.map((f, i) => insertFlow(t, f, T0, i, hash));
    slots.forEach((s, i) => {
      if (i !== 3) t.touch(s, T0 + 10, 0);
    });
    const fresh = { ...randomFlow(next), proto: 17 };
    const s = insertFlow(t, fresh, T0 + TIMEOUTS.udpIdleMs, 100, hash);
    expect(s).toBe(slots[3]);
    expect(t.evictions).toBe(0);
    expect(t.expirations).toBe(1);
    expect(t.size).toBe(16);
    expect(t.backendOf(lookupFlow(t, fresh, T0 + TIMEOUTS.udpIdleMs, hash))).toBe(100);
  });
});

describe('FlowTable: MPTCP token fields', () => {
  it('insert starts with no token; setToken, tokenStateOf and tokenOf round-trip; re-insert resets', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const f = tcp4('10.0.0.1', 1, '10.0.0.2', 2);
    const s = insertFlow(t, f, T0, 1);
    expect(t.tokenStateOf(s)).toBe(FLOW_TOKEN_NONE);
    for (const [state, token] of [
      [FLOW_TOKEN_HELD, 0xfedcba98],
      [FLOW_TOKEN_COLLIDED, 7],
      [FLOW_TOKEN_NONE, 0],
    ] as const) {
      t.setToken(s, state, token, T0);
      expect([t.tokenStateOf(s), t.tokenOf(s)]).toEqual([state, token]);
      expect(t.stateOf(s)).toBe(FLOW_ACTIVE); // the token bits leave the state alone
    }
    t.setToken(s, FLOW_TOKEN_HELD, 99, T0);
    expect(insertFlow(t, f, T0 + 1, 2)).toBe(s);
    expect(t.tokenStateOf(s)).toBe(FLOW_TOKEN_NONE);
  });

  const due = [
    { name: 'held, interval not reached', state: FLOW_TOKEN_HELD, after: 999, due: false },
    { name: 'held, interval reached', state: FLOW_TOKEN_HELD, after: 1000, due: true },
    { name: 'collided, never refreshed', state: FLOW_TOKEN_COLLIDED, after: 5000, due: false },
    { name: 'none, never refreshed', state: FLOW_TOKEN_NONE, after: 5000, due: false },
  ];
  it.each(due)('tokenRefreshDue: $name', ({ state, after, due: isDue }) => {
    const t = new FlowTable(64, TIMEOUTS);
    const s = insertFlow(t, tcp4('10.0.0.1', 1, '10.0.0.2', 2), T0, 1);
    t.setToken(s, state, 1234, T0);
    expect(t.tokenRefreshDue(s, T0 + after, 1000)).toBe(isDue);
    // A refresh that was due is recorded: not due again right after.
    expect(t.tokenRefreshDue(s, T0 + after, 1000)).toBe(false);
  });
});

describe('FlowTable: remove and sweep', () => {
  it('remove then re-insert; remove of empty, out-of-range and discard slots is a no-op', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const f = tcp4('172.16.0.1', 33333, '172.16.0.2', 22);
    const s = insertFlow(t, f, T0, 1);
    t.remove(s);
    expect(t.size).toBe(0);
    expect(lookupFlow(t, f, T0)).toBe(-1);
    t.remove(s);
    t.remove(-1);
    t.remove(t.slots);
    t.remove(t.discardSlot);
    expect(t.size).toBe(0);
    insertFlow(t, f, T0 + 1, 2);
    expect(t.backendOf(lookupFlow(t, f, T0 + 1))).toBe(2);
    expect(t.size).toBe(1);
  });

  const sweepCases = [{ maxSlots: 1 }, { maxSlots: 100 }, { maxSlots: 333 }, { maxSlots: 4096 }];
  it.each(sweepCases)('sweep examines at most $maxSlots slots per call and eventually frees every expired entry', ({ maxSlots }) => {
    const t = new FlowTable(1024, TIMEOUTS);
    const total = t.slots;
    const next = rng(maxSlots);
    const fresh: Flow[] = [];
    let staleCount = 0;
    for (let i = 0; i < 300; i++) {
      const f = { ...randomFlow(next), proto: 17 };
      const slot = insertFlow(t, f, T0, i);
      if (i % 3 === 0) {
        t.touch(slot, T0 + TIMEOUTS.udpIdleMs, 0);
        fresh.push(f);
      } else staleCount++;
    }
    const now = T0 + TIMEOUTS.udpIdleMs + 1;
    const isStale = new Uint8Array(total);
    t.forEachSlot((slot) => {
      if (t.lastSeenOf(slot) === T0) isStale[slot] = 1;
    });
    let cursor = 0;
    let sum = 0;
    const n = Math.min(maxSlots, total);
    for (let c = 0; c < Math.ceil(total / n); c++) {
      // Exactly the stale slots in the next maxSlots positions are freed.
      let expected = 0;
      for (let i = 0; i < n; i++) {
        expected += isStale[(cursor + i) % total];
        isStale[(cursor + i) % total] = 0;
      }
      cursor = (cursor + n) % total;
      const got = t.sweep(now, maxSlots);
      expect(got).toBe(expected);
      sum += got;
    }
    expect(sum).toBe(staleCount);
    expect(t.size).toBe(fresh.length);
    expect(t.expirations).toBe(staleCount);
    for (const f of fresh) expect(lookupFlow(t, f, now)).toBeGreaterThanOrEqual(0);
    expect(t.sweep(now, total)).toBe(0);
  });
});

describe('FlowTable: control-side iteration', () => {
  /** The WHATWG URL parser's IPv6 serialization is RFC 5952 compressed form: an independent oracle. */
  const canonicalV6 = (bytes: number[]): string => {
    const groups = [];
    for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
    return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
  };
  const v6Shapes: { name: string; bytes: number[] }[] = [
    { name: 'all zero', bytes: Array(16).fill(0) },
    { name: 'loopback', bytes: [...Array(15).fill(0), 1] },
    { name: 'documentation prefix', bytes: [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1] },
    { name: 'single zero group (not compressed)', bytes: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1] },
    { name: 'two zero runs, longer second', bytes: [0x20, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1] },
    { name: 'two equal zero runs (first wins)', bytes: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1] },
    { name: 'trailing zeros', bytes: [0xfe, 0x80, ...Array(14).fill(0)] },
    { name: 'no zeros', bytes: Array.from({ length: 16 }, (_, i) => 0x10 + i) },
  ];
  it.each(v6Shapes)('forEach decodes IPv6 addresses in RFC 5952 form: $name', ({ bytes }) => {
    const t = new FlowTable(64, TIMEOUTS);
    const f: Flow = { v: 6, proto: 6, src: bytes, dst: [...bytes].reverse(), sport: 1, dport: 2 };
    insertFlow(t, f, T0, 1);
    const got: FlowEntryInfo[] = [];
    t.forEach(T0, (e) => got.push(e));
    expect(got.map((e) => [e.src, e.dst])).toEqual([[canonicalV6(bytes), canonicalV6([...bytes].reverse())]]);
  });

  it('forEach lists live flows with decoded keys, ages and states, up to a limit', () => {
    const t = new FlowTable(256, TIMEOUTS);
    const a = tcp4('192.0.2.1', 40001, '198.51.100.7', 443);
    const b: Flow = { ...tcp4('192.0.2.2', 5000, '198.51.100.7', 53), proto: 17 };
    const gone: Flow = { ...tcp4('192.0.2.3', 5001, '198.51.100.7', 53), proto: 17 };
    const sa = insertFlow(t, a, T0, 11, undefined, 2, 5);
    insertFlow(t, b, T0 + 500, 12, undefined, 3, 6);
    insertFlow(t, gone, T0 - TIMEOUTS.udpIdleMs, 13);
    expect(t.size).toBe(3);
    t.touch(sa, T0 + 1000, TCP_FIN);
    const now = T0 + 2000;
    const listed: FlowEntryInfo[] = [];
    t.forEach(now, (e) => listed.push(e));
    listed.sort((x, y) => x.backendId - y.backendId);
    expect(listed).toEqual([
      { slot: sa, ipVersion: 4, protocol: 6, src: '192.0.2.1', dst: '198.51.100.7', srcPort: 40001, dstPort: 443, backendId: 11, serviceIndex: 2, generation: 5, ageMs: 2000, idleMs: 1000, state: 'closing', kind: 'closing' },
      expect.objectContaining({ src: '192.0.2.2', srcPort: 5000, dstPort: 53, protocol: 17, backendId: 12, serviceIndex: 3, generation: 6, ageMs: 1500, idleMs: 1500, state: 'active', kind: 'other' }),
    ]);
    const limited: FlowEntryInfo[] = [];
    t.forEach(now, (e) => limited.push(e), 1);
    expect(limited.length).toBe(1);
  });

  it('forEachSlot visits each occupied slot once, skips expired ones given a clock, and allows remove', () => {
    const t = new FlowTable(512, TIMEOUTS);
    const next = rng(55);
    const slots = new Set<number>();
    for (let i = 0; i < 100; i++) {
      const slot = insertFlow(t, { ...randomFlow(next), proto: 17 }, T0 - TIMEOUTS.udpIdleMs, i);
      if (i >= 40) t.touch(slot, T0, 0);
      slots.add(slot);
    }
    const all: number[] = [];
    t.forEachSlot((s) => all.push(s));
    expect(all.sort((x, y) => x - y)).toEqual([...slots].sort((x, y) => x - y));
    const live: number[] = [];
    t.forEachSlot((s) => live.push(s), T0);
    expect(live.length).toBe(60);
    // The reload pattern: drop the flows of a departed backend while iterating.
    t.forEachSlot((s) => {
      if (t.backendOf(s) % 2 === 0) t.remove(s);
    });
    expect(t.size).toBe(50);
    t.forEachSlot((s) => expect(t.backendOf(s) % 2).toBe(1));
  });

  it('clear empties the table', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const f = tcp4('10.0.0.1', 1, '10.0.0.2', 2);
    insertFlow(t, f, T0, 1);
    t.clear();
    expect(t.size).toBe(0);
    expect(lookupFlow(t, f, T0)).toBe(-1);
  });
});
