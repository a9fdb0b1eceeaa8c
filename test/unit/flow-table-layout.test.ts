/**
 * The flow table as one buffer: memory figures, formatting an external buffer, attaching to an
 * existing table (a restarted process, another worker), and refusing what it cannot read.
 */
import { describe, expect, it } from 'vitest';
import { FLOW_HEADER_BYTES, FLOW_LAYOUT_VERSION, H32 } from '../../src/dataplane/flow-layout.js';
import { FLOW_BYTES_PER_SLOT, FLOW_KIND_HALF_OPEN, FLOW_TOKEN_HELD, FlowTable, type FlowTimeouts } from '../../src/dataplane/flow-table.js';
import { TCP_SYN } from '../../src/packet/parsed-packet.js';
import { xorshift32 as rng } from '../fixtures/random.js';
import { SEED, T0, insertFlow, lookupFlow, randomFlow, type Flow } from '../fixtures/flow-packets.js';

const TIMEOUTS: FlowTimeouts = { tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000, halfOpenMs: 10_000 };
const MiB = 1024 * 1024;

describe('FlowTable: memory', () => {
  const sizes = [
    { capacity: 1024, maxBytesPerFlow: 80 }, // the destination table weighs more in a small table
    { capacity: 65536, maxBytesPerFlow: 61 },
    { capacity: 1 << 20, maxBytesPerFlow: 60 },
  ];
  it.each(sizes)('capacity $capacity: one buffer of bytesFor(capacity), at most $maxBytesPerFlow bytes per flow', ({ capacity, maxBytesPerFlow }) => {
    const t = new FlowTable(capacity, TIMEOUTS);
    expect(t.memoryBytes).toBe(FlowTable.bytesFor(capacity));
    expect(t.buffer.byteLength).toBe(t.memoryBytes);
    expect(t.memoryBytes).toBeGreaterThanOrEqual(FLOW_HEADER_BYTES + t.slots * FLOW_BYTES_PER_SLOT);
    expect(t.memoryBytes / capacity).toBeLessThanOrEqual(maxBytesPerFlow);
  });

  it('1,048,576 flows fit in 64 MiB (the goal), at 54 bytes per slot', () => {
    expect(FLOW_BYTES_PER_SLOT).toBe(54);
    const bytes = FlowTable.bytesFor(1 << 20);
    console.log(`capacity 1048576: ${bytes} bytes = ${(bytes / MiB).toFixed(2)} MiB, ${(bytes / (1 << 20)).toFixed(1)} bytes per flow`);
    expect(bytes).toBeLessThanOrEqual(64 * MiB);
  });
});

function populate(t: FlowTable, n: number, seed: number): Flow[] {
  const next = rng(seed);
  const flows: Flow[] = [];
  for (let i = 0; i < n; i++) {
    const f = randomFlow(next);
    flows.push(f);
    const s = insertFlow(t, f, T0, i, undefined, 2, 9, i % 5 === 0 ? TCP_SYN : undefined);
    if (i % 3 === 0) t.setToken(s, FLOW_TOKEN_HELD, 0xabc000 + i, T0);
  }
  return flows;
}

describe('FlowTable: one buffer, attachable', () => {
  const buffers = [
    { name: 'SharedArrayBuffer', make: (cap: number) => new FlowTable(cap, TIMEOUTS, { shared: true, hashSeed: SEED, epochMs: T0 }) },
    { name: 'ArrayBuffer', make: (cap: number) => new FlowTable(cap, TIMEOUTS, { hashSeed: SEED, epochMs: T0 }) },
    { name: 'external buffer, larger than needed', make: (cap: number) => new FlowTable(cap, TIMEOUTS, { buffer: new ArrayBuffer(FlowTable.bytesFor(cap) + 4096), hashSeed: SEED, epochMs: T0 }) },
  ];
  it.each(buffers)('$name: an attached table finds every flow with its values, counts and tokens', ({ make }) => {
    const a = make(4096);
    const flows = populate(a, 3000, 11);
    const b = FlowTable.attach(a.buffer, { hashSeed: SEED, nowMs: T0 + 5 });
    expect(b.capacity).toBe(a.capacity);
    expect(b.timeouts).toEqual(a.timeouts);
    expect(b.hashSeed).toBe(SEED);
    expect([b.size, b.halfOpen, b.inserts]).toEqual([a.size, a.halfOpen, a.inserts]);
    expect(b.halfOpen).toBe(flows.filter((f, i) => i % 5 === 0 && f.proto === 6).length);
    flows.forEach((f, i) => {
      const s = lookupFlow(b, f, T0 + 5);
      expect(s).toBe(lookupFlow(a, f, T0 + 5));
      expect([b.backendOf(s), b.serviceOf(s), b.generationOf(s), b.lastSeenOf(s), b.createdOf(s)]).toEqual([i, 2, 9, T0, T0]);
      expect(b.kindOf(s) === FLOW_KIND_HALF_OPEN).toBe(i % 5 === 0 && f.proto === 6);
      if (i % 3 === 0) expect([b.tokenStateOf(s), b.tokenOf(s)]).toEqual([FLOW_TOKEN_HELD, 0xabc000 + i]);
    });
    // Both objects are views of the same bytes: what one writes, the other reads.
    const extra = randomFlow(rng(99));
    insertFlow(b, extra, T0 + 6, 4242);
    expect(a.backendOf(lookupFlow(a, extra, T0 + 6))).toBe(4242);
    expect(a.size).toBe(3001);
  });

  it('attach through the constructor applies the new timeouts and keeps the flows', () => {
    const a = new FlowTable(1024, TIMEOUTS, { epochMs: T0 });
    const flows = populate(a, 500, 12);
    const b = new FlowTable(1024, { ...TIMEOUTS, udpIdleMs: 1000 }, { attach: a.buffer, epochMs: T0 });
    expect(b.size).toBe(500);
    const udp = flows.findIndex((f) => f.proto === 17);
    expect(lookupFlow(b, flows[udp], T0 + 999)).toBeGreaterThanOrEqual(0);
    expect(lookupFlow(b, flows[udp], T0 + 1000)).toBe(-1);
    expect(FlowTable.attach(a.buffer).timeouts.udpIdleMs).toBe(1000);
  });

  it('a table attached far from its clock (relative times no longer comparable) starts empty', () => {
    const a = new FlowTable(1024, TIMEOUTS, { epochMs: T0 });
    populate(a, 100, 13);
    const b = FlowTable.attach(a.buffer, { nowMs: T0 + 30 * 24 * 3600 * 1000 });
    expect(b.size).toBe(0);
  });

  /** A copy of a valid table's bytes with one header word changed. */
  function tampered(word: number, value: number): ArrayBuffer {
    const a = new FlowTable(64, TIMEOUTS, { hashSeed: SEED });
    insertFlow(a, randomFlow(rng(5)), T0, 1);
    const copy = a.buffer.slice(0) as ArrayBuffer;
    new Uint32Array(copy, 0, 32)[word] = value;
    return copy;
  }
  const refusals: { name: string; buffer: () => ArrayBuffer; capacity: number; seed?: number; message: RegExp }[] = [
    { name: 'a newer layout version', buffer: () => tampered(H32.version, FLOW_LAYOUT_VERSION + 1), capacity: 64, message: new RegExp(`layout version ${FLOW_LAYOUT_VERSION + 1} is not understood by this build \\(it reads version ${FLOW_LAYOUT_VERSION}\\)`) },
    { name: 'layout version 0', buffer: () => tampered(H32.version, 0), capacity: 64, message: /layout version 0 is not understood/ },
    { name: 'another magic', buffer: () => tampered(H32.magic, 0x12345678), capacity: 64, message: /not a Sluice flow table/ },
    { name: 'an empty buffer', buffer: () => new ArrayBuffer(4096), capacity: 64, message: /not a Sluice flow table/ },
    { name: 'a buffer shorter than a header', buffer: () => new ArrayBuffer(16), capacity: 64, message: /less than a header/ },
    { name: 'a truncated table', buffer: () => tampered(H32.magic, 0x31544c46).slice(0, 2048), capacity: 64, message: /refusing to attach/ },
    { name: 'a bucket count that does not match the recorded size', buffer: () => tampered(H32.buckets, 1000), capacity: 64, message: /refusing to attach/ },
    { name: 'another capacity', buffer: () => tampered(H32.magic, 0x31544c46), capacity: 128, message: /capacity 64, not 128/ },
    { name: 'another hash seed', buffer: () => tampered(H32.magic, 0x31544c46), capacity: 64, seed: SEED + 1, message: /hashed with seed/ },
  ];
  it.each(refusals)('refuses $name with a clear error', ({ buffer, capacity, seed, message }) => {
    expect(() => new FlowTable(capacity, TIMEOUTS, { attach: buffer(), hashSeed: seed })).toThrow(message);
  });

  it('refuses to format an external buffer that is too small', () => {
    expect(() => new FlowTable(1024, TIMEOUTS, { buffer: new ArrayBuffer(1024) })).toThrow(/needs/);
  });
});
