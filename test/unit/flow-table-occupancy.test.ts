import { describe, expect, it } from 'vitest';
import { FLOW_CHUNK_SLOTS, FLOW_EMPTY, FlowTable, type FlowTimeouts } from '../../src/dataplane/flow-table.js';
import { TCP_SYN } from '../../src/packet/parsed-packet.js';
import { xorshift32 as rng } from '../fixtures/random.js';
import { T0, insertFlow, lookupFlow, randomFlow, type Flow } from '../fixtures/flow-packets.js';

// The occupancy summary (flow-layout.ts chunkLive): live entries per chunk of FLOW_CHUNK_SLOTS
// slots, which lets scans skip chunks with no entry without reading them (an idle data plane's
// sweep otherwise faults in every page of its mapped table).

const TIMEOUTS: FlowTimeouts = { tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000, halfOpenMs: 10_000 };

function chunksOf(t: FlowTable): number {
  return Math.ceil(t.slots / FLOW_CHUNK_SLOTS);
}

/** Occupied slots per chunk, read slot by slot: the oracle the summary must equal. */
function truth(t: FlowTable): number[] {
  const counts = new Array<number>(chunksOf(t)).fill(0);
  for (let s = 0; s < t.slots; s++) if (t.stateOf(s) !== FLOW_EMPTY) counts[Math.floor(s / FLOW_CHUNK_SLOTS)]++;
  return counts;
}

function summary(t: FlowTable): number[] {
  return Array.from({ length: chunksOf(t) }, (_, k) => t.chunkLiveOf(k));
}

function udpFlows(n: number, seed: number): Flow[] {
  const next = rng(seed);
  return Array.from({ length: n }, () => ({ ...randomFlow(next), proto: 17 }));
}

describe('FlowTable occupancy summary: scans read only chunks that hold flows', () => {
  const cases = [{ flows: 0 }, { flows: 1 }, { flows: 10 }, { flows: 200 }];
  it.each(cases)('a full sweep pass over a 65536-flow table holding $flows flows', ({ flows }) => {
    const t = new FlowTable(65536, TIMEOUTS, { epochMs: T0 });
    for (const [i, f] of udpFlows(flows, 7 + flows).entries()) insertFlow(t, f, T0, i);
    const holding = truth(t).filter((c) => c > 0).length;
    const before = t.chunksRead;
    // One pass in windows of 4096 slots (a multiple of the chunk size: no chunk is split).
    for (let left = t.slots; left > 0; left -= 4096) t.sweep(T0 + 1, Math.min(4096, left));
    const read = t.chunksRead - before;
    // Without the summary every chunk is read on each pass.
    console.log(`${flows} flows: a full sweep pass read ${read} chunks (${holding} hold flows); a scan without the summary reads all ${chunksOf(t)}`);
    expect(read).toBe(holding);
    expect(read).toBeLessThan(chunksOf(t));
    expect(t.size).toBe(flows);

    const listed = t.chunksRead;
    let seen = 0;
    t.forEachSlot(() => seen++);
    expect(seen).toBe(flows);
    expect(t.chunksRead - listed).toBe(holding);
  });

  it('an expired flow found by the sweep is freed, and the next pass no longer reads its chunk', () => {
    const t = new FlowTable(65536, TIMEOUTS, { epochMs: T0 });
    insertFlow(t, udpFlows(1, 3)[0], T0, 1);
    const late = T0 + TIMEOUTS.udpIdleMs;
    expect(t.sweep(late, t.slots)).toBe(1);
    const before = t.chunksRead;
    expect(t.sweep(late, t.slots)).toBe(0);
    expect(t.chunksRead - before).toBe(0);
  });
});

describe('FlowTable occupancy summary: exact under every change', () => {
  const cases: { name: string; capacity: number; run: (t: FlowTable) => void; check?: (t: FlowTable) => void }[] = [
    {
      name: 'inserts below capacity',
      capacity: 1024,
      run: (t) => udpFlows(700, 1).forEach((f, i) => insertFlow(t, f, T0, i)),
    },
    {
      name: 'inserts to capacity (entries relocated to their other bucket, stash in use)',
      capacity: 1024,
      run: (t) => udpFlows(1024, 2).forEach((f, i) => insertFlow(t, f, T0, i)),
      check: (t) => expect(t.relocations).toBeGreaterThan(0),
    },
    {
      name: 'inserts past capacity (evictions)',
      capacity: 64,
      run: (t) => udpFlows(400, 3).forEach((f, i) => insertFlow(t, f, T0 + i, i)),
      check: (t) => expect(t.evictions).toBeGreaterThan(0),
    },
    {
      name: 'a SYN flood past the half-open share (half-open entries replaced, flows untracked)',
      capacity: 256,
      run: (t) => udpFlows(1000, 4).forEach((f, i) => insertFlow(t, { ...f, proto: 6 }, T0, i, undefined, 3, 7, TCP_SYN)),
      check: (t) => expect(t.untracked + t.evictions).toBeGreaterThan(0),
    },
    {
      name: 'expiry by the sweep',
      capacity: 1024,
      run: (t) => {
        udpFlows(600, 5).forEach((f, i) => insertFlow(t, f, i % 2 === 0 ? T0 : T0 + TIMEOUTS.udpIdleMs, i));
        t.sweep(T0 + TIMEOUTS.udpIdleMs + 1, t.slots);
      },
      check: (t) => expect(t.size).toBe(300),
    },
    {
      name: 'expiry found by lookup and by insert',
      capacity: 1024,
      run: (t) => {
        const flows = udpFlows(600, 6);
        flows.forEach((f, i) => insertFlow(t, f, T0, i));
        const late = T0 + TIMEOUTS.udpIdleMs;
        flows.slice(0, 200).forEach((f) => lookupFlow(t, f, late));
        udpFlows(600, 66).forEach((f, i) => insertFlow(t, f, late, i));
      },
      check: (t) => expect(t.expirations).toBeGreaterThan(200),
    },
    {
      name: 'remove, during forEachSlot',
      capacity: 1024,
      run: (t) => {
        udpFlows(800, 7).forEach((f, i) => insertFlow(t, f, T0, i));
        t.forEachSlot((s) => {
          if (t.backendOf(s) % 3 !== 0) t.remove(s);
        });
      },
      check: (t) => expect(t.size).toBe(267),
    },
    {
      name: 're-insert of flows already present',
      capacity: 1024,
      run: (t) => {
        const flows = udpFlows(300, 8);
        flows.forEach((f, i) => insertFlow(t, f, T0, i));
        flows.forEach((f, i) => insertFlow(t, f, T0 + 1, i + 1));
      },
      check: (t) => expect(t.size).toBe(300),
    },
    {
      name: 'clear',
      capacity: 1024,
      run: (t) => {
        udpFlows(500, 9).forEach((f, i) => insertFlow(t, f, T0, i));
        t.clear();
      },
      check: (t) => expect(summary(t).every((c) => c === 0)).toBe(true),
    },
  ];
  it.each(cases)('$name', ({ capacity, run, check }) => {
    const t = new FlowTable(capacity, TIMEOUTS, { epochMs: T0 });
    run(t);
    check?.(t);
    expect(summary(t)).toEqual(truth(t));
    expect(summary(t).reduce((a, b) => a + b, 0)).toBe(t.size);
  });
});

describe('FlowTable occupancy summary: an attached table', () => {
  const cases = [
    { name: 'as its writer left it', spoil: (_live: Uint32Array) => {} },
    // A writer that died after counting a slot up and before filling it leaves a count above the truth.
    { name: 'a count left above the truth by a writer that died mid-insert', spoil: (live: Uint32Array) => live.forEach((c, k) => (live[k] = c + (k % 3))) },
  ];
  it.each(cases)('recounts the chunks it will scan: $name', ({ spoil }) => {
    const a = new FlowTable(4096, TIMEOUTS, { epochMs: T0, shared: true });
    udpFlows(1500, 10).forEach((f, i) => insertFlow(a, f, T0, i));
    const expected = truth(a);
    const copy = a.buffer.slice(0);
    const b0 = new FlowTable(4096, TIMEOUTS, { attach: copy, epochMs: T0 });
    // The summary is the first array after the 256-byte header (flow-layout.ts).
    spoil(new Uint32Array(copy, 256, chunksOf(b0)));
    const b = FlowTable.attach(copy, { nowMs: T0 });
    expect(summary(b)).toEqual(expected);
    expect(b.size).toBe(1500);
  });
});
