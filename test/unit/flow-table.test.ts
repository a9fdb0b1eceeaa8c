import { describe, expect, it } from 'vitest';
import {
  FLOW_ACTIVE,
  FLOW_BYTES_PER_SLOT,
  FLOW_CLOSING,
  FLOW_EMPTY,
  FLOW_MAX_CAPACITY,
  FLOW_PROBE_WINDOW,
  FlowTable,
  type FlowEntryInfo,
  type FlowTimeouts,
} from '../../src/dataplane/flow-table.js';
import { copyFlowKey, flowHash } from '../../src/hash/murmur3.js';
import { ParsedPacket, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../src/packet/parsed-packet.js';
import { xorshift32 as rng } from '../fixtures/random.js';

const TIMEOUTS: FlowTimeouts = { tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000 };
const SEED = 0x1234abcd;
const T0 = 1_700_000_000_000;

interface Flow {
  v: 4 | 6;
  proto: number;
  src: number[];
  dst: number[];
  sport: number;
  dport: number;
}

/** A frame with the flow's addresses where an IPv4/IPv6 header would hold them, and its ParsedPacket. */
function packet(f: Flow, flags = 0): { frame: Uint8Array; p: ParsedPacket } {
  const frame = new Uint8Array(96).fill(0xee);
  const p = new ParsedPacket();
  p.l3Offset = 14;
  p.ipVersion = f.v;
  p.addrLen = f.v === 4 ? 4 : 16;
  p.srcAddrOffset = 14 + (f.v === 4 ? 12 : 8);
  p.dstAddrOffset = p.srcAddrOffset + p.addrLen;
  frame.set(f.src, p.srcAddrOffset);
  frame.set(f.dst, p.dstAddrOffset);
  p.protocol = f.proto;
  p.srcPort = f.sport;
  p.dstPort = f.dport;
  p.tcpFlags = flags;
  return { frame, p };
}

function randomFlow(next: () => number): Flow {
  const v: 4 | 6 = (next() & 1) === 0 ? 4 : 6;
  const n = v === 4 ? 4 : 16;
  return {
    v,
    proto: (next() & 1) === 0 ? 6 : 17,
    src: Array.from({ length: n }, () => next() & 255),
    dst: Array.from({ length: n }, () => next() & 255),
    sport: next() & 0xffff,
    dport: next() & 0xffff,
  };
}

const v4 = (s: string): number[] => s.split('.').map(Number);
const tcp4 = (src: string, sport: number, dst: string, dport: number): Flow => ({ v: 4, proto: 6, src: v4(src), dst: v4(dst), sport, dport });

function insertFlow(t: FlowTable, f: Flow, now: number, backend: number, hash?: number, service = 3, generation = 7): number {
  const { frame, p } = packet(f);
  return t.insert(frame, p, hash ?? flowHash(frame, p, SEED), now, backend, service, generation);
}

function lookupFlow(t: FlowTable, f: Flow, now: number, hash?: number): number {
  const { frame, p } = packet(f);
  return t.lookup(frame, p, hash ?? flowHash(frame, p, SEED), now);
}

describe('FlowTable: construction and memory', () => {
  const capacities = [
    { requested: 1, capacity: 1 },
    { requested: 3, capacity: 4 },
    { requested: 16, capacity: 16 },
    { requested: 1000, capacity: 1024 },
    { requested: 262144, capacity: 262144 },
    { requested: 262145, capacity: 524288 },
  ];
  it.each(capacities)('capacity $requested rounds up to $capacity', ({ requested, capacity }) => {
    expect(new FlowTable(requested, TIMEOUTS).capacity).toBe(capacity);
  });

  const bad = [
    { name: 'zero capacity', capacity: 0, timeouts: TIMEOUTS },
    { name: 'fractional capacity', capacity: 10.5, timeouts: TIMEOUTS },
    { name: 'capacity above the maximum', capacity: FLOW_MAX_CAPACITY + 1, timeouts: TIMEOUTS },
    { name: 'zero tcp idle timeout', capacity: 16, timeouts: { ...TIMEOUTS, tcpIdleMs: 0 } },
    { name: 'NaN closing timeout', capacity: 16, timeouts: { ...TIMEOUTS, tcpClosingMs: Number.NaN } },
    { name: 'infinite udp timeout', capacity: 16, timeouts: { ...TIMEOUTS, udpIdleMs: Number.POSITIVE_INFINITY } },
  ];
  it.each(bad)('rejects $name', ({ capacity, timeouts }) => {
    expect(() => new FlowTable(capacity, timeouts)).toThrow(RangeError);
  });

  it('documents its bytes per slot, and 2^20 slots stay under 100 MB', () => {
    const small = new FlowTable(1024, TIMEOUTS);
    expect(small.memoryBytes).toBe(1024 * FLOW_BYTES_PER_SLOT);
    const big = new FlowTable(1 << 20, TIMEOUTS);
    expect(big.memoryBytes).toBe((1 << 20) * FLOW_BYTES_PER_SLOT);
    expect(big.memoryBytes).toBeLessThan(100e6);
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

describe('FlowTable: timeouts (fake clock)', () => {
  const cases: { name: string; proto: number; flags: number; timeout: number; state: number }[] = [
    { name: 'TCP idle', proto: 6, flags: TCP_ACK | TCP_PSH, timeout: TIMEOUTS.tcpIdleMs, state: FLOW_ACTIVE },
    { name: 'TCP SYN stays active', proto: 6, flags: TCP_SYN, timeout: TIMEOUTS.tcpIdleMs, state: FLOW_ACTIVE },
    { name: 'TCP closing after FIN', proto: 6, flags: TCP_FIN | TCP_ACK, timeout: TIMEOUTS.tcpClosingMs, state: FLOW_CLOSING },
    { name: 'TCP closing after RST', proto: 6, flags: TCP_RST, timeout: TIMEOUTS.tcpClosingMs, state: FLOW_CLOSING },
    { name: 'UDP idle', proto: 17, flags: 0, timeout: TIMEOUTS.udpIdleMs, state: FLOW_ACTIVE },
    { name: 'other protocol (ICMP) uses the UDP timeout', proto: 1, flags: 0, timeout: TIMEOUTS.udpIdleMs, state: FLOW_ACTIVE },
  ];
  it.each(cases)('$name: alive until idle reaches the timeout, then absent and freed', ({ proto, flags, timeout, state }) => {
    const t = new FlowTable(64, TIMEOUTS);
    const flow: Flow = { ...tcp4('10.1.1.1', 5555, '10.2.2.2', 443), proto };
    const s = insertFlow(t, flow, T0, 1);
    t.touch(s, T0 + 1000, flags);
    expect(t.stateOf(s)).toBe(state);
    const seen = T0 + 1000;
    expect(lookupFlow(t, flow, seen + timeout - 1)).toBe(s);
    expect(t.expirations).toBe(0);
    expect(lookupFlow(t, flow, seen + timeout)).toBe(-1);
    expect(t.expirations).toBe(1);
    expect(t.size).toBe(0);
    expect(t.stateOf(s)).toBe(FLOW_EMPTY);
  });

  it.each(cases)('$name: touch refreshes lastSeen', ({ proto, flags, timeout }) => {
    const t = new FlowTable(64, TIMEOUTS);
    const flow: Flow = { ...tcp4('10.1.1.1', 5555, '10.2.2.2', 443), proto };
    const s = insertFlow(t, flow, T0, 1);
    t.touch(s, T0, flags);
    t.touch(s, T0 + timeout - 1, 0);
    expect(t.lastSeenOf(s)).toBe(T0 + timeout - 1);
    expect(lookupFlow(t, flow, T0 + 2 * timeout - 2)).toBe(s);
  });

  it('closing is not undone by later packets', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const flow = tcp4('10.1.1.1', 5555, '10.2.2.2', 443);
    const s = insertFlow(t, flow, T0, 1);
    t.touch(s, T0, TCP_FIN);
    t.touch(s, T0 + 1, TCP_ACK);
    expect(t.stateOf(s)).toBe(FLOW_CLOSING);
  });

  it('an expired entry is replaced by insert without counting an eviction', () => {
    const t = new FlowTable(16, TIMEOUTS);
    const next = rng(8);
    for (let i = 0; i < 16; i++) insertFlow(t, { ...randomFlow(next), proto: 17 }, T0, i, 5);
    const fresh = randomFlow(next);
    const s = insertFlow(t, fresh, T0 + TIMEOUTS.udpIdleMs, 100, 5);
    expect(t.evictions).toBe(0);
    expect(t.expirations).toBe(1);
    expect(t.size).toBe(16);
    expect(t.backendOf(lookupFlow(t, fresh, T0 + TIMEOUTS.udpIdleMs, 5))).toBe(100);
    expect(s).toBeGreaterThanOrEqual(0);
  });
});

describe('FlowTable: eviction', () => {
  const oldestCases = [{ oldest: 0 }, { oldest: 5 }, { oldest: 15 }];
  it.each(oldestCases)('a full probe window evicts its least recently seen entry (#$oldest) and counts it', ({ oldest }) => {
    const t = new FlowTable(1024, TIMEOUTS);
    const next = rng(oldest + 1);
    const hash = 300; // every flow lands in the same window
    const flows = Array.from({ length: FLOW_PROBE_WINDOW }, () => randomFlow(next));
    const slots = flows.map((f, i) => insertFlow(t, f, T0 + i, i, hash));
    // Everyone but `oldest` is seen again later.
    slots.forEach((s, i) => {
      if (i !== oldest) t.touch(s, T0 + 100 + i, 0);
    });
    const extra = randomFlow(next);
    const s = insertFlow(t, extra, T0 + 200, 77, hash);
    expect(s).toBe(slots[oldest]);
    expect(t.evictions).toBe(1);
    expect(t.size).toBe(FLOW_PROBE_WINDOW);
    expect(lookupFlow(t, flows[oldest], T0 + 200, hash)).toBe(-1);
    flows.forEach((f, i) => {
      if (i !== oldest) expect(t.backendOf(lookupFlow(t, f, T0 + 200, hash))).toBe(i);
    });
    expect(t.backendOf(lookupFlow(t, extra, T0 + 200, hash))).toBe(77);
  });

  it('evictions stay inside the probe window of the overflowing hash', () => {
    const t = new FlowTable(1024, TIMEOUTS);
    const next = rng(404);
    const bystanders = Array.from({ length: 200 }, () => randomFlow(next));
    const bySlot = bystanders.map((f, i) => insertFlow(t, f, T0, i));
    const window = new Set<number>();
    for (let i = 0; i < FLOW_PROBE_WINDOW + 10; i++) window.add(insertFlow(t, randomFlow(next), T0 + 1 + i, 1000 + i, 12345));
    expect(window.size).toBe(FLOW_PROBE_WINDOW);
    expect(t.evictions).toBeGreaterThanOrEqual(10);
    let untouched = 0;
    bystanders.forEach((f, i) => {
      if (window.has(bySlot[i])) return;
      untouched++;
      expect(t.backendOf(lookupFlow(t, f, T0 + 100))).toBe(i);
    });
    expect(untouched).toBeGreaterThan(150);
  });

  it('a table smaller than the window still never fails to insert', () => {
    const t = new FlowTable(4, TIMEOUTS);
    const next = rng(3);
    for (let i = 0; i < 10; i++) {
      const f = randomFlow(next);
      const s = insertFlow(t, f, T0 + i, i);
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThan(4);
      expect(lookupFlow(t, f, T0 + i)).toBe(s);
    }
    expect(t.size).toBe(4);
    expect(t.evictions).toBe(6);
  });
});

describe('FlowTable: remove and sweep', () => {
  it('remove then re-insert', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const f = tcp4('172.16.0.1', 33333, '172.16.0.2', 22);
    const s = insertFlow(t, f, T0, 1);
    t.remove(s);
    expect(t.size).toBe(0);
    expect(lookupFlow(t, f, T0)).toBe(-1);
    t.remove(s); // already empty: no-op
    t.remove(-1);
    t.remove(64);
    expect(t.size).toBe(0);
    const s2 = insertFlow(t, f, T0 + 1, 2);
    expect(t.backendOf(lookupFlow(t, f, T0 + 1))).toBe(2);
    expect(t.size).toBe(1);
    expect(s2).toBeGreaterThanOrEqual(0);
  });

  const sweepCases = [{ maxSlots: 1 }, { maxSlots: 100 }, { maxSlots: 333 }, { maxSlots: 4096 }];
  it.each(sweepCases)('sweep examines at most $maxSlots slots per call and eventually frees every expired entry', ({ maxSlots }) => {
    const cap = 1024;
    const t = new FlowTable(cap, TIMEOUTS);
    const next = rng(maxSlots);
    const stale: Flow[] = [];
    const fresh: Flow[] = [];
    for (let i = 0; i < 300; i++) {
      const f = { ...randomFlow(next), proto: 17 };
      const slot = insertFlow(t, f, T0, i);
      if (i % 3 === 0) {
        t.touch(slot, T0 + TIMEOUTS.udpIdleMs, 0);
        fresh.push(f);
      } else {
        stale.push(f);
      }
    }
    const now = T0 + TIMEOUTS.udpIdleMs + 1;
    const isStale = new Uint8Array(cap);
    t.forEachSlot((slot) => {
      if (t.lastSeenOf(slot) === T0) isStale[slot] = 1;
    });
    let cursor = 0;
    let total = 0;
    const calls = Math.ceil(cap / Math.min(maxSlots, cap));
    for (let c = 0; c < calls; c++) {
      // Exactly the stale slots in the next maxSlots positions are freed.
      let expected = 0;
      const n = Math.min(maxSlots, cap);
      for (let i = 0; i < n; i++) {
        expected += isStale[(cursor + i) % cap];
        isStale[(cursor + i) % cap] = 0;
      }
      cursor = (cursor + n) % cap;
      const got = t.sweep(now, maxSlots);
      expect(got).toBe(expected);
      expect(got).toBeLessThanOrEqual(maxSlots);
      total += got;
    }
    expect(total).toBe(stale.length);
    expect(t.size).toBe(fresh.length);
    expect(t.expirations).toBe(stale.length);
    for (const f of fresh) expect(lookupFlow(t, f, now)).toBeGreaterThanOrEqual(0);
    expect(t.sweep(now, cap)).toBe(0);
  });
});

describe('FlowTable: scale', () => {
  it('100k random flows in capacity 262144 are all found, with no evictions; 100k absent keys never hit', () => {
    const t = new FlowTable(262144, TIMEOUTS);
    const next = rng(2024);
    const n = 100_000;
    const flows: Flow[] = [];
    for (let i = 0; i < n; i++) {
      const f = randomFlow(next);
      f.dport &= 0x7fff; // present keys: dst port < 32768
      flows.push(f);
      insertFlow(t, f, T0, i);
    }
    expect(t.size).toBe(n);
    expect(t.evictions).toBe(0);
    for (let i = 0; i < n; i++) {
      const s = lookupFlow(t, flows[i], T0 + 1);
      expect(s).toBeGreaterThanOrEqual(0);
      if (t.backendOf(s) !== i) expect.fail(`flow ${i} found backend ${t.backendOf(s)}`);
    }
    // Absent keys: dst port >= 32768, so they cannot equal any present key.
    let hits = 0;
    for (let i = 0; i < n; i++) {
      const f = randomFlow(next);
      f.dport |= 0x8000;
      if (lookupFlow(t, f, T0 + 1) >= 0) hits++;
    }
    expect(hits).toBe(0);
    // Near misses in the same probe window: one field changed, original hash kept.
    for (let i = 0; i < 20_000; i++) {
      const f = flows[i];
      const { frame, p } = packet(f);
      const h = flowHash(frame, p, SEED);
      const near: Flow = i % 2 === 0 ? { ...f, sport: f.sport ^ 1 } : { ...f, src: [...f.src.slice(0, -1), f.src[f.src.length - 1] ^ 1] };
      if (lookupFlow(t, near, T0 + 1, h) >= 0) hits++;
    }
    expect(hits).toBe(0);
    expect(t.size).toBe(n);
  });
});

describe('FlowTable: load', () => {
  // The two-bucket layout is chosen for this: at 50% load no insert should evict, and at 75%
  // evictions stay rare (a 16-slot linear-probe window evicts about 1.3% of inserts at 75%).
  const loads = [
    { load: 0.5, maxEvictionRate: 0 },
    { load: 0.75, maxEvictionRate: 0.001 },
  ];
  it.each(loads)('at $load load, evictions stay at or under $maxEvictionRate of inserts', ({ load, maxEvictionRate }) => {
    const cap = 1 << 16;
    const t = new FlowTable(cap, TIMEOUTS);
    const next = rng(Math.round(load * 1000));
    const n = Math.round(cap * load);
    for (let i = 0; i < n; i++) insertFlow(t, randomFlow(next), T0, i);
    expect(t.inserts).toBe(n);
    expect(t.evictions).toBeLessThanOrEqual(Math.floor(n * maxEvictionRate));
    expect(t.size).toBe(n - t.evictions);
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
      { slot: sa, ipVersion: 4, protocol: 6, src: '192.0.2.1', dst: '198.51.100.7', srcPort: 40001, dstPort: 443, backendId: 11, serviceIndex: 2, generation: 5, ageMs: 2000, idleMs: 1000, state: 'closing' },
      expect.objectContaining({ src: '192.0.2.2', srcPort: 5000, dstPort: 53, protocol: 17, backendId: 12, serviceIndex: 3, generation: 6, ageMs: 1500, idleMs: 1500, state: 'active' }),
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
