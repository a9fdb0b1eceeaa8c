/**
 * Where flows go and which ones leave: bucketized cuckoo placement at high load, eviction
 * preference by kind, the half-open share under a simulated SYN flood, pinned entries, and the
 * destination table's limit.
 */
import { describe, expect, it } from 'vitest';
import {
  FLOW_KIND_CLOSING,
  FLOW_KIND_ESTABLISHED,
  FLOW_KIND_HALF_OPEN,
  FLOW_KIND_NAMES,
  FLOW_KIND_OTHER,
  FLOW_STASH_SLOTS,
  FLOW_TOKEN_HELD,
  FlowTable,
  type FlowTimeouts,
} from '../../src/dataplane/flow-table.js';
import { flowHash } from '../../src/hash/murmur3.js';
import { ParsedPacket, TCP_ACK, TCP_FIN, TCP_SYN } from '../../src/packet/parsed-packet.js';
import { xorshift32 as rng } from '../fixtures/random.js';
import { SEED, T0, insertFlow, lookupFlow, randomFlow, tcp4, writePacket, type Flow } from '../fixtures/flow-packets.js';

const TIMEOUTS: FlowTimeouts = { tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000, halfOpenMs: 10_000 };

describe('FlowTable: load (cuckoo placement)', () => {
  // Sized at capacity + 1/16 slots: a table filled to its capacity runs at ~94% load. Every
  // flow must stay (0 evictions, 0 untracked) and keep its values through relocations.
  const loads = [
    { name: 'IPv4, 90% of capacity', load: 0.9, family: 4 as const },
    { name: 'IPv4, 100% of capacity', load: 1.0, family: 4 as const },
    { name: 'mixed IPv4/IPv6, 100% of capacity', load: 1.0, family: undefined },
  ];
  it.each(loads)('$name: 0 evictions, every flow found with its backend and token', ({ load, family }) => {
    const t = new FlowTable(1 << 16, TIMEOUTS);
    const next = rng(Math.round(load * 1000) + (family ?? 0));
    const n = Math.round(t.capacity * load);
    const flows: Flow[] = [];
    const frame = new Uint8Array(96);
    const p = new ParsedPacket();
    for (let i = 0; i < n; i++) {
      const f = randomFlow(next, family);
      f.sport = i & 0xffff; // distinct keys: (src, sport) with sport = i mod 2^16 and dport >= 80
      f.dport = 80 + (i >>> 16);
      flows.push(f);
      writePacket(f, f.proto === 6 ? TCP_ACK : 0, frame, p);
      const s = t.insert(frame, p, flowHash(frame, p, SEED), T0, i, 1, 1);
      t.setToken(s, FLOW_TOKEN_HELD, i ^ 0x5a5a5a5a, T0);
    }
    expect(t.size).toBe(n);
    expect(t.evictions).toBe(0);
    expect(t.untracked).toBe(0);
    if (load === 1) expect(t.size / t.slots).toBeGreaterThan(0.9);
    console.log(`load ${load} (${(t.size / t.slots).toFixed(3)} of slots): relocations ${t.relocations}, stashed ${t.stashed}, evictions ${t.evictions}`);
    let wrong = 0;
    for (let i = 0; i < n; i++) {
      writePacket(flows[i], 0, frame, p);
      const s = t.lookup(frame, p, flowHash(frame, p, SEED), T0 + 1);
      if (s < 0 || t.backendOf(s) !== i || t.tokenOf(s) !== (i ^ 0x5a5a5a5a) >>> 0) wrong++;
    }
    expect(wrong).toBe(0);
  });

  it('a pinned entry (backend below -1: an owner query in flight) keeps its slot while the table fills', () => {
    const t = new FlowTable(4096, TIMEOUTS);
    const next = rng(77);
    const pinnedFlow = randomFlow(next, 4);
    const pinned = insertFlow(t, pinnedFlow, T0, -9);
    for (let i = 0; i < t.capacity - 1; i++) insertFlow(t, randomFlow(next), T0, i);
    expect(t.relocations).toBeGreaterThan(0);
    expect(t.backendOf(pinned)).toBe(-9);
    expect(lookupFlow(t, pinnedFlow, T0)).toBe(pinned);
  });
});

/** Fill the stash with established flows of another window, so the window under test has nowhere else to go. */
function fillStash(t: FlowTable, next: () => number): void {
  for (let i = 0; i < 16 + FLOW_STASH_SLOTS; i++) insertFlow(t, { ...randomFlow(next, 4), proto: 6 }, T0, 5000 + i, 0x9abcdef0);
  expect(t.stashed).toBe(FLOW_STASH_SLOTS);
}

describe('FlowTable: eviction prefers half-open, then closing, then the least recently seen', () => {
  type Kind = 'half-open' | 'established' | 'closing' | 'udp';
  const flagsOf = (k: Kind): number => (k === 'half-open' ? TCP_SYN : TCP_ACK);
  const cases: { name: string; window: Kind[]; fresh: Kind; victim: number | 'untracked'; kind: number }[] = [
    { name: 'established newcomer, one half-open in the window', window: [...Array(15).fill('established'), 'half-open'], fresh: 'established', victim: 15, kind: FLOW_KIND_HALF_OPEN },
    { name: 'established newcomer, one closing among established', window: [...Array(15).fill('established'), 'closing'], fresh: 'established', victim: 15, kind: FLOW_KIND_CLOSING },
    { name: 'established newcomer, closing and half-open: half-open first', window: [...Array(14).fill('established'), 'closing', 'half-open'], fresh: 'established', victim: 15, kind: FLOW_KIND_HALF_OPEN },
    { name: 'established newcomer, all established: the least recently seen', window: Array(16).fill('established'), fresh: 'established', victim: 0, kind: FLOW_KIND_ESTABLISHED },
    { name: 'UDP newcomer, all UDP: the least recently seen', window: Array(16).fill('udp'), fresh: 'udp', victim: 0, kind: FLOW_KIND_OTHER },
    { name: 'half-open newcomer, all established: not tracked, nobody evicted', window: Array(16).fill('established'), fresh: 'half-open', victim: 'untracked', kind: -1 },
    { name: 'half-open newcomer, one half-open among established', window: [...Array(15).fill('established'), 'half-open'], fresh: 'half-open', victim: 15, kind: FLOW_KIND_HALF_OPEN },
  ];
  it.each(cases)('$name', ({ window, fresh, victim, kind }) => {
    const t = new FlowTable(1024, TIMEOUTS);
    const next = rng(window.length + fresh.length);
    const hash = 0x12345678;
    const flows = window.map((k) => ({ ...randomFlow(next, 4), proto: k === 'udp' ? 17 : 6 }));
    const slots = flows.map((f, i) => insertFlow(t, f, T0 + i, i, hash, 3, 7, flagsOf(window[i])));
    window.forEach((k, i) => {
      if (k === 'closing') t.touch(slots[i], T0 + i, TCP_FIN);
    });
    fillStash(t, next);
    const newFlow = { ...randomFlow(next, 4), proto: fresh === 'udp' ? 17 : 6 };
    const before = t.size;
    const s = insertFlow(t, newFlow, T0 + 100, 77, hash, 3, 7, flagsOf(fresh));
    const counts = [FLOW_KIND_HALF_OPEN, FLOW_KIND_ESTABLISHED, FLOW_KIND_CLOSING, FLOW_KIND_OTHER].map((k) => t.evictionsOf(k));
    if (victim === 'untracked') {
      expect(s).toBe(t.discardSlot);
      expect(t.untracked).toBe(1);
      expect(t.evictions).toBe(0);
      expect(t.size).toBe(before);
      expect(lookupFlow(t, newFlow, T0 + 100, hash)).toBe(-1);
      // The caller may still use the discard slot for this packet.
      expect(t.backendOf(s)).toBe(77);
      flows.forEach((f, i) => expect(t.backendOf(lookupFlow(t, f, T0 + 100, hash))).toBe(i));
    } else {
      expect(s).toBe(slots[victim]);
      expect(counts).toEqual([0, 1, 2, 3].map((k) => (k === kind ? 1 : 0)));
      expect(t.evictions).toBe(1);
      expect(lookupFlow(t, flows[victim], T0 + 100, hash)).toBe(-1);
      expect(t.backendOf(lookupFlow(t, newFlow, T0 + 100, hash))).toBe(77);
      flows.forEach((f, i) => {
        if (i !== victim) expect(t.backendOf(lookupFlow(t, f, T0 + 100, hash))).toBe(i);
      });
    }
  });

  it('pinned entries (owner query in flight) are never evicted: a full pinned window leaves the newcomer untracked', () => {
    const t = new FlowTable(1024, TIMEOUTS);
    const next = rng(91);
    const flows = Array.from({ length: 16 }, () => randomFlow(next, 4));
    flows.forEach((f, i) => insertFlow(t, f, T0, -2 - i, 0x12345678));
    fillStash(t, next);
    expect(insertFlow(t, randomFlow(next, 4), T0 + 1, 5, 0x12345678)).toBe(t.discardSlot);
    expect(t.evictions).toBe(0);
    flows.forEach((f, i) => expect(t.backendOf(lookupFlow(t, f, T0 + 1, 0x12345678))).toBe(-2 - i));
  });
});

describe('FlowTable: SYN flood', () => {
  /**
   * 1,000 established connections, idle (last packet long ago, well within the TCP idle timeout),
   * then 200,000 spoofed SYNs (one per random source) over 20 simulated seconds into a table of
   * capacity 4,096: the table is overfilled ~50 times. With the protection, half-open entries
   * stay within their share and no established flow is lost; with the previous policy
   * (least recently seen of any kind, 300 s for half-open) the idle connections are evicted.
   */
  const runs = [
    { name: 'protection on', protect: true },
    { name: 'protection off (previous policy)', protect: false },
  ];
  const results = new Map<string, { lost: number; evictedEstablished: number; evictedHalfOpen: number; untracked: number }>();
  it.each(runs)('$name', ({ name, protect }) => {
    const t = new FlowTable(4096, TIMEOUTS, { floodProtection: protect });
    const next = rng(4242);
    const frame = new Uint8Array(96);
    const p = new ParsedPacket();
    const established: Flow[] = [];
    for (let i = 0; i < 1000; i++) {
      const f: Flow = { ...randomFlow(next, 4), proto: 6, dport: 22 };
      established.push(f);
      writePacket(f, TCP_SYN, frame, p);
      const h = flowHash(frame, p, SEED);
      const s = t.insert(frame, p, h, T0, i, 1, 1);
      t.touch(s, T0, TCP_SYN);
      t.touch(s, T0 + 1, TCP_ACK); // the handshake completes
    }
    const flood = 200_000;
    let maxHalfOpen = 0;
    for (let i = 0; i < flood; i++) {
      const now = T0 + 60_000 + Math.floor((i * 20_000) / flood);
      const f: Flow = { ...randomFlow(next, 4), proto: 6, dport: 22 };
      writePacket(f, TCP_SYN, frame, p);
      const s = t.insert(frame, p, flowHash(frame, p, SEED), now, 1 + (i % 7), 1, 1);
      t.touch(s, now, TCP_SYN);
      if ((i & 255) === 0) t.sweep(now, 1024);
      if (t.halfOpen > maxHalfOpen) maxHalfOpen = t.halfOpen;
    }
    const end = T0 + 80_000;
    let lost = 0;
    established.forEach((f, i) => {
      const s = lookupFlow(t, f, end);
      if (s < 0 || t.backendOf(s) !== i) lost++;
    });
    const r = {
      lost,
      evictedEstablished: t.evictionsOf(FLOW_KIND_ESTABLISHED),
      evictedHalfOpen: t.evictionsOf(FLOW_KIND_HALF_OPEN),
      untracked: t.untracked,
    };
    results.set(name, r);
    console.log(`SYN flood, ${name}: established lost ${lost} of 1000; evicted by kind ${FLOW_KIND_NAMES.map((k, i) => `${k} ${t.evictionsOf(i)}`).join(', ')}; untracked ${t.untracked}; half-open peak ${maxHalfOpen} (limit ${t.halfOpenLimit})`);
    if (protect) {
      expect(lost).toBe(0);
      expect(r.evictedEstablished).toBe(0);
      expect(r.evictedHalfOpen).toBeGreaterThan(0);
      expect(maxHalfOpen).toBeLessThanOrEqual(t.halfOpenLimit);
    } else {
      // The comparison run must show what the protection prevents.
      expect(lost).toBeGreaterThan(500);
      expect(r.evictedEstablished).toBeGreaterThan(500);
    }
  });
  it('both runs were compared', () => {
    expect(results.size).toBe(2);
    console.log(`established lost: protection on ${results.get(runs[0].name)?.lost}, off ${results.get(runs[1].name)?.lost}`);
  });
});

describe('FlowTable: destination table', () => {
  it('references follow inserts, removes and expiries; a freed entry is reused', () => {
    const t = new FlowTable(64, TIMEOUTS);
    const a = tcp4('192.0.2.1', 1, '198.51.100.1', 80);
    const b = tcp4('192.0.2.2', 2, '198.51.100.1', 80);
    const sa = insertFlow(t, a, T0, 1);
    const sb = insertFlow(t, b, T0, 2);
    const total = (): number => Array.from({ length: 64 }, (_, i) => t.destinationRefs(i)).reduce((x, y) => x + y, 0);
    expect(total()).toBe(2);
    t.remove(sa);
    expect(total()).toBe(1);
    expect(lookupFlow(t, b, T0 + TIMEOUTS.tcpIdleMs)).toBe(-1);
    expect(total()).toBe(0);
    expect(sb).toBeGreaterThanOrEqual(0);
  });

  it('more distinct live destinations than the table holds: the newcomer is not tracked, and is once one frees', () => {
    const t = new FlowTable(16, TIMEOUTS); // 16 destinations
    const flows = Array.from({ length: 17 }, (_, i) => tcp4('192.0.2.1', 1000 + i, `198.51.100.${i + 1}`, 80));
    const slots = flows.map((f, i) => insertFlow(t, f, T0, i));
    expect(slots.slice(0, 16).every((s) => s >= 0 && s < t.slots)).toBe(true);
    expect(slots[16]).toBe(t.discardSlot);
    expect(t.untracked).toBe(1);
    t.remove(slots[0]);
    const s = insertFlow(t, flows[16], T0, 16);
    expect(s).toBeLessThan(t.slots);
    expect(t.backendOf(lookupFlow(t, flows[16], T0))).toBe(16);
  });
});
