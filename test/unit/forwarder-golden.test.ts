/**
 * The golden forwarder table (test/fixtures/forward-golden.ts) through the real Forwarder, in
 * every forwarding mode: each case's output frame is compared whole, byte for byte, with the
 * frame built from the mode's specification; each drop must be counted under its reason and no
 * other. The table must name every drop reason, so a new reason without a fixture fails here.
 */
import { describe, expect, it } from 'vitest';
import { Forwarder } from '../../src/dataplane/forwarder.js';
import { DROP_REASONS, Drop, type DropReasonName } from '../../src/packet/drop-reasons.js';
import { DROPS_BASE, ENTITY, G, backendCounter } from '../../src/dataplane/contract/counters.js';
import { FRAME_SLOT_BYTES } from '../../src/dataplane/contract/limits.js';
import { TCP_ACK } from '../../src/packet/parsed-packet.js';
import { buildFrame } from '../../src/packet/build.js';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DECIDED_BY_THE_RING_ENGINE, GOLDEN_CASES, MODES, NEVER_COUNTED, EGRESS_MAC, goldenSpec, ipipFrame, dsrFrame, type GoldenCase, type Mode } from '../fixtures/forward-golden.js';
import { CLIENT4, VIP4 } from '../fixtures/malformed-frames.js';

const NOW = 1000;

function newForwarder(): Forwarder {
  return new Forwarder({ flowCapacity: 1024, tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000, tokenCapacity: 1024, affinityCapacity: 1024 });
}

interface Run {
  len: number;
  out: Buffer;
  /** Drop counters that moved while the input frame was handled. */
  drops: Partial<Record<DropReasonName, number>>;
  rxFrames: number;
  /** Frames the input released (early fragments), as hex. */
  released: string[];
}

/** One case through a fresh Forwarder given the `specMode` generation (normally the mode under test). */
function run(c: GoldenCase, specMode: Mode): Run {
  const fwd = newForwarder();
  const spec = goldenSpec(specMode);
  c.adjust?.(spec);
  fwd.apply(spec);
  if (c.ownerQueries) fwd.setOwnerQuery(() => undefined, c.ownerQueries.holdPerQuery);
  const tx = Buffer.alloc(FRAME_SLOT_BYTES);
  const releaseTx = Buffer.alloc(FRAME_SLOT_BYTES);
  let released: string[] = [];
  fwd.setFragmentRelease(releaseTx, (n) => released.push(releaseTx.subarray(0, n).toString('hex')));
  for (const f of c.before ?? []) fwd.forward(f, f.length, tx, NOW);
  released = [];
  const dropsBefore = fwd.counters.slice(DROPS_BASE, DROPS_BASE + DROP_REASONS.length);
  const rxBefore = fwd.counters[G.rxFrames];
  let len: number;
  if (c.engine === 'capture-truncated') {
    // What both capture engines do with a frame the capture cut: count it in, count the drop, never forward it.
    fwd.counters[G.rxFrames]++;
    fwd.countDrop(Drop.capture_truncated);
    len = 0;
  } else {
    len = fwd.forward(c.input, c.input.length, tx, NOW);
    if (c.engine === 'tx-fails') {
      // The frame was built (and must have been), then the transmit failed: the engines count it so.
      expect(len).toBeGreaterThan(0);
      fwd.countDrop(Drop.tx_error);
      len = 0;
    }
  }
  if (c.expireAfterMs !== undefined) fwd.expireFragments(NOW + c.expireAfterMs);
  const drops: Partial<Record<DropReasonName, number>> = {};
  DROP_REASONS.forEach((name, i) => {
    const moved = fwd.counters[DROPS_BASE + i] - dropsBefore[i];
    if (moved !== 0) drops[name] = moved;
  });
  return { len, out: Buffer.from(tx.subarray(0, len)), drops, rxFrames: fwd.counters[G.rxFrames] - rxBefore, released };
}

const casesFor = (mode: Mode): { name: string; c: GoldenCase }[] => GOLDEN_CASES.filter((c) => c.expect[mode] !== undefined).map((c) => ({ name: c.name, c }));

describe.each(MODES.map((mode) => ({ mode })))('golden forwarder cases, $mode', ({ mode }) => {
  it.each(casesFor(mode))('$name', ({ c }) => {
    const want = c.expect[mode]!;
    const got = run(c, mode);
    expect(got.rxFrames).toBe(1);
    if (want.action === 'forward' || want.action === 'reply') {
      // Whole frames, as hex, so a mismatch shows the byte that differs.
      expect(got.out.toString('hex')).toBe(want.frame.toString('hex'));
      expect(got.drops).toEqual(want.action === 'reply' && want.reason !== undefined ? { [want.reason]: 1 } : {});
    } else {
      expect(got.len).toBe(0);
      expect(got.drops).toEqual({ [want.reason]: 1 });
    }
    expect(got.released).toEqual((c.released?.[mode] ?? []).map((f) => f.toString('hex')));
  });
});

describe('golden table coverage', () => {
  it('every drop reason has a case that earns it (or is listed as never counted, with the case that shows it)', () => {
    const earned = new Set<string>();
    for (const c of GOLDEN_CASES) for (const o of Object.values(c.expect)) if (o.action !== 'forward' && o.reason !== undefined) earned.add(o.reason);
    const missing = DROP_REASONS.filter((r) => r !== 'ok' && !earned.has(r) && NEVER_COUNTED[r] === undefined && DECIDED_BY_THE_RING_ENGINE[r] === undefined);
    expect(missing).toEqual([]);
    const ringEngine = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'dataplane', 'engine-ring.ts'), 'utf8');
    for (const reason of Object.keys(DECIDED_BY_THE_RING_ENGINE)) {
      expect(ringEngine, `${reason} is listed as decided by the ring engine, which never counts it`).toContain(`countDrop(Drop.${reason})`);
    }
    for (const [reason, caseName] of Object.entries(NEVER_COUNTED)) {
      expect(earned.has(reason), `${reason} is listed as never counted but a case earns it`).toBe(false);
      const shown = GOLDEN_CASES.find((c) => c.name === caseName);
      expect(shown, `the case that shows ${reason} is never counted`).toBeDefined();
      for (const o of Object.values(shown!.expect)) expect(o.action).toBe('forward');
    }
  });

  it('every forwarding mode forwards, and ipip covers all four family pairs; dsr-l2 covers both families and VLAN tags', () => {
    const kinds = new Set<string>();
    for (const c of GOLDEN_CASES) {
      for (const mode of MODES) {
        const o = c.expect[mode];
        if (o?.action !== 'forward') continue;
        const f = o.frame;
        if (mode === 'ipip') {
          const outer = f.readUInt16BE(12) === 0x0800 ? 4 : 6;
          const proto = outer === 4 ? f[14 + 9] : f[14 + 6];
          kinds.add(`ipip ${proto === 41 ? 6 : 4}in${outer}`);
        } else {
          const type = f.readUInt16BE(12);
          kinds.add(type === 0x0800 ? 'dsr-l2 ipv4' : type === 0x86dd ? 'dsr-l2 ipv6' : 'dsr-l2 tagged');
        }
      }
    }
    expect([...kinds].sort()).toEqual(['dsr-l2 ipv4', 'dsr-l2 ipv6', 'dsr-l2 tagged', 'ipip 4in4', 'ipip 4in6', 'ipip 6in4', 'ipip 6in6']);
  });

  it('the comparison can fail: given the other mode, no forwarded case matches its golden frame', () => {
    const both = GOLDEN_CASES.filter((c) => c.expect['dsr-l2']?.action === 'forward' && c.expect.ipip?.action === 'forward');
    const matches = (c: GoldenCase, expectMode: Mode, specMode: Mode): boolean => {
      const want = c.expect[expectMode];
      return want?.action === 'forward' && run(c, specMode).out.equals(want.frame);
    };
    const rightMode = both.filter((c) => MODES.every((m) => matches(c, m, m))).length;
    const swapped = both.filter((c) => matches(c, 'dsr-l2', 'ipip') || matches(c, 'ipip', 'dsr-l2')).length;
    console.log(`golden frames matched: ${rightMode}/${both.length} with the right mode, ${swapped}/${both.length} with the modes swapped`);
    expect(both.length).toBeGreaterThan(5);
    expect(rightMode).toBe(both.length);
    expect(swapped).toBe(0);
  });
});

describe('held frames replay through the pipeline once (owner queries)', () => {
  const ack = { eth: { src: '02:00:00:00:00:01', dst: EGRESS_MAC }, ipv4: { src: CLIENT4, dst: VIP4 }, tcp: { sport: 45000, dport: 80, flags: TCP_ACK }, payload: 'held' };

  it.each(MODES.map((mode) => ({ mode })))('$mode: released byte-exact, counted once in rx and once per backend', ({ mode }) => {
    const fwd = newForwarder();
    fwd.apply(goldenSpec(mode));
    const qids: number[] = [];
    fwd.setOwnerQuery((qid) => qids.push(qid), 4);
    const frame = buildFrame(ack);
    const tx = Buffer.alloc(FRAME_SLOT_BYTES);
    expect(fwd.forward(frame, frame.length, tx, NOW)).toBe(0);
    expect(fwd.forward(frame, frame.length, tx, NOW)).toBe(0);
    expect(qids).toHaveLength(1);
    const sent: string[] = [];
    fwd.answer(qids[0], 1, NOW + 1, tx, (len) => sent.push(tx.subarray(0, len).toString('hex')));
    // ipip: the two held frames are this forwarder's first and second encapsulations.
    const want = mode === 'ipip' ? [ipipFrame(ack, 1, 1), ipipFrame(ack, 1, 2)] : [dsrFrame(ack, 1), dsrFrame(ack, 1)];
    expect(sent).toEqual(want.map((f) => f.toString('hex')));
    expect(fwd.counters[G.rxFrames]).toBe(2);
    expect(fwd.counters[G.rxBytes]).toBe(2 * frame.length);
    expect(fwd.counters[backendCounter(1, ENTITY.packets)]).toBe(2);
    expect(fwd.counters[backendCounter(1, ENTITY.bytes)]).toBe(2 * frame.length);
    expect(fwd.counters[G.heldPackets]).toBe(2);
    expect(fwd.counters[G.ownerHits]).toBe(1);
  });
});
