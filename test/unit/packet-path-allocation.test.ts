/**
 * The packet path allocates nothing (the hot-path rule): each case warms a real Forwarder up
 * until V8 has optimized it, then forwards FRAMES frames (ROUNDS times) into one reused tx slot
 * and measures the bytes allocated on the V8 heap meanwhile (test/fixtures/heap-allocation.ts).
 * The frames are the golden table's (test/fixtures/forward-golden.ts), in both forwarding modes,
 * and two counted drops; the new-flow cases write a fresh source port (IPv6: and address byte)
 * into the frame before every forward, so each one misses the 1024-flow table, which is soon
 * full (a SYN flood into a full table).
 *
 * Before copy-bytes.ts and the int32 changes, this measured 96-208 B/frame for VLAN, ipip and
 * split frames (Buffer.copy's view of the source) and 16-32 B/frame elsewhere (boxed numbers).
 *
 * The first case is the measure's own check: Buffer.copy from an offset, which Node 20 does
 * through a new view of the source per call, must show up as tens of bytes per frame.
 *
 * The clock is a Date.now()-like value 30 days after the flow table's start, moved on per
 * batch of 256 frames; a relative clock of 2^31 ms or more was boxed too (flow-slots rel()).
 * The flow hash travels as a signed int32 (flowHashBits): an unsigned hash of 2^31 or more
 * would be boxed in a 16-byte HeapNumber wherever it crosses a call V8 did not inline, which
 * this test showed as exactly 16 B/frame for such flows before.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Forwarder } from '../../src/dataplane/forwarder.js';
import { FRAME_SLOT_BYTES } from '../../src/dataplane/contract/limits.js';
import { G } from '../../src/dataplane/contract/counters.js';
import { GOLDEN_CASES, goldenSpec, type Mode } from '../fixtures/forward-golden.js';
import { measureAllocation } from '../fixtures/heap-allocation.js';

/**
 * The clock: 30 days after the flow table was made (its relative clock past 2^31 ms, which once
 * boxed it), no small integer, moved on per batch of 256 frames as the capture engines do.
 */
const UPTIME_MS = 30 * 24 * 3600 * 1000;
const WARMUP = 50_000;
const FRAMES = 100_000;
/**
 * Measured loops per case; the least is reported. V8 may still compile (or recompile) something
 * of the path in one of them, which puts its code objects on the heap once: a per-frame
 * allocation shows in every round.
 */
const ROUNDS = 3;
/** Allowed average: the harness's own (profiler start, heap statistics, a clock value per 256 frames) spread over FRAMES. */
const MAX_BYTES_PER_FRAME = 1;

interface AllocationCase {
  name: string;
  mode: Mode;
  /** The golden case whose input (and setup) is forwarded. */
  golden: string;
  /**
   * Every frame a new flow: its 16-bit TCP/UDP source port (at `port`) is written per frame, and
   * for IPv6 the source address's last byte (`addressByte`, -1: none; IPv4 has a header checksum
   * to keep). With a 1024-flow table, ports that come round again find their flow long gone.
   */
  newFlow?: { port: number; addressByte: number };
}

const IPV4_SPORT = 14 + 20;
const IPV6_SPORT = 14 + 40;
const IPV6_SRC_LAST = 14 + 8 + 15;

const DNS4 = 'IPv4 UDP DNS query';
const SYN4 = 'IPv4 TCP SYN with Linux options';
const TCP6 = 'IPv6 TCP data segment (flow label and hop limit of the client kept)';
const VLAN_STRIP = '802.1Q VLAN 100 tagged IPv4 TCP onto an untagged egress segment (the default): the tag is removed in both modes';
const VLAN_RETAG = 'vlan.egress 300: an untagged frame leaves tagged 300';
const JOIN = 'an MP_JOIN SYN follows its connection (token learned from the third ACK), not its own 5-tuple';
const SPLIT = 'a full-MTU IPv4 packet without DF: ipip sends the outer packet in 2 fragments (1480 + 20 bytes of it), the backend reassembles';

const CASES: AllocationCase[] = [
  { name: 'dsr-l2 IPv4 UDP, established flow', mode: 'dsr-l2', golden: DNS4 },
  { name: 'dsr-l2 IPv4 UDP, a new flow per frame', mode: 'dsr-l2', golden: DNS4, newFlow: { port: IPV4_SPORT, addressByte: -1 } },
  { name: 'dsr-l2 IPv4 TCP SYN flood into a full flow table', mode: 'dsr-l2', golden: SYN4, newFlow: { port: IPV4_SPORT, addressByte: -1 } },
  { name: 'dsr-l2 IPv6 TCP, established flow', mode: 'dsr-l2', golden: TCP6 },
  { name: 'dsr-l2 IPv6 TCP, a new flow per frame', mode: 'dsr-l2', golden: TCP6, newFlow: { port: IPV6_SPORT, addressByte: IPV6_SRC_LAST } },
  { name: 'dsr-l2 VLAN-tagged frame onto an untagged segment', mode: 'dsr-l2', golden: VLAN_STRIP },
  { name: 'dsr-l2 untagged frame tagged for the egress VLAN', mode: 'dsr-l2', golden: VLAN_RETAG },
  { name: 'dsr-l2 MPTCP join following its token', mode: 'dsr-l2', golden: JOIN },
  { name: 'ipip IPv4 UDP, established flow', mode: 'ipip', golden: DNS4 },
  { name: 'ipip IPv4 TCP SYN flood into a full flow table', mode: 'ipip', golden: SYN4, newFlow: { port: IPV4_SPORT, addressByte: -1 } },
  { name: 'ipip IPv6 TCP (ip6ip6), established flow', mode: 'ipip', golden: TCP6 },
  { name: 'ipip VLAN-tagged frame', mode: 'ipip', golden: VLAN_STRIP },
  { name: 'ipip MPTCP join following its token', mode: 'ipip', golden: JOIN },
  { name: 'ipip full-MTU IPv4 without DF, split into 2 outer fragments', mode: 'ipip', golden: SPLIT },
  { name: 'a counted drop: IPv4 header checksum off by one', mode: 'dsr-l2', golden: 'malformed: IPv4 header checksum off by one' },
  { name: 'a counted drop: TCP to a port no service has', mode: 'dsr-l2', golden: 'TCP to a port no service has' },
];

interface Outcome {
  bytesPerFrame: number;
  collections: number;
  /** Frames forward() returned a frame for in the last round (the others were counted drops). */
  forwarded: number;
}

/** A case's Forwarder, warmed up, and its measurement. */
interface PreparedCase {
  measure(): Outcome;
}

function prepareCase(c: AllocationCase): PreparedCase {
  const golden = GOLDEN_CASES.find((g) => g.name === c.golden);
  if (golden === undefined) throw new Error(`no golden case named ${c.golden}`);
  const fwd = new Forwarder({ flowCapacity: 1024, tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000, tokenCapacity: 1024, affinityCapacity: 1024 });
  const spec = goldenSpec(c.mode);
  golden.adjust?.(spec);
  fwd.apply(spec);
  const start = Date.now() + UPTIME_MS;
  const tx = Buffer.alloc(FRAME_SLOT_BYTES);
  const releaseTx = Buffer.alloc(FRAME_SLOT_BYTES);
  // The split case's leading fragments go here (sent and forgotten).
  fwd.setFragmentRelease(releaseTx, () => undefined);
  for (const f of golden.before ?? []) fwd.forward(f, f.length, tx, start);
  const rx = Buffer.from(golden.input);
  const len = rx.length;
  const flow = c.newFlow;
  let forwarded = 0;
  let now = start;
  const step = (i: number): void => {
    // A new clock value per batch (a HeapNumber every 256 frames: the harness's, about 0.06 B/frame).
    if ((i & 255) === 0) now = start + (i >>> 8);
    if (flow !== undefined) {
      rx[flow.port] = (i >>> 8) & 0xff;
      rx[flow.port + 1] = i & 0xff;
      if (flow.addressByte >= 0) rx[flow.addressByte] = (i >>> 16) & 0xff;
    }
    if (fwd.forward(rx, len, tx, now) > 0) forwarded++;
  };
  for (let i = 0; i < WARMUP; i++) step(i);
  return {
    measure(): Outcome {
      let bytes = Infinity;
      let collections = 0;
      for (let r = 0; r < ROUNDS; r++) {
        forwarded = 0;
        const base = WARMUP + r * FRAMES;
        const figure = measureAllocation(FRAMES, (i) => step(base + i));
        if (figure.bytes < bytes) {
          bytes = figure.bytes;
          collections = figure.collections;
        }
      }
      expect(fwd.counters[G.rxFrames]).toBe(WARMUP + ROUNDS * FRAMES + (golden.before?.length ?? 0));
      return { bytesPerFrame: bytes / FRAMES, collections, forwarded };
    },
  };
}

describe('packet path allocation', () => {
  it('the measure sees a per-call allocation: Buffer.copy from an offset makes a view of the source each time', () => {
    const rx = Buffer.alloc(1514, 7);
    const tx = Buffer.alloc(FRAME_SLOT_BYTES);
    for (let i = 0; i < WARMUP; i++) rx.copy(tx, 0, 14, 1514);
    const figure = measureAllocation(FRAMES, () => {
      rx.copy(tx, 0, 14, 1514);
    });
    const perCall = figure.bytes / FRAMES;
    console.log(`Buffer.copy(tx, 0, 14, 1514): ${perCall.toFixed(2)} B/call, ${figure.collections} collections`);
    expect(perCall).toBeGreaterThan(40);
  });

  // Every case's frames first go through the path (each its own Forwarder), as a balancer's mixed
  // traffic does, before any is measured: optimized for one kind of frame alone, the path was
  // seen (in about one fresh process of three) to allocate 16 B per frame, cause not yet found.
  const prepared = new Map<string, PreparedCase>();
  beforeAll(() => {
    for (const c of CASES) prepared.set(c.name, prepareCase(c));
  });

  it.each(CASES)('$name: no heap allocation per frame', (c) => {
    const prep = prepared.get(c.name);
    if (prep === undefined) throw new Error(`case ${c.name} was not prepared`);
    const o = prep.measure();
    console.log(
      `${c.name}: ${o.bytesPerFrame.toFixed(3)} B/frame over ${FRAMES} frames (${o.forwarded} forwarded), ${o.collections} collections`,
    );
    expect(o.bytesPerFrame).toBeLessThan(MAX_BYTES_PER_FRAME);
  });
});
