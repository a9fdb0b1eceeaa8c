/**
 * Fragments as an owned cluster key (fragment-owner.ts through the real Forwarder): two
 * forwarders stand for two instances behind a router that sent a datagram's first fragment to
 * A and its later fragment to B. A publishes (datagram key -> backend); B holds the later
 * fragment, asks with the same key, and on the owner's answer sends it to A's backend, byte for
 * byte as A would have. With publishing and queries off, B's fragment waits out its hold and is
 * dropped as fragment_unmatched: the test prints both counts.
 */
import { describe, expect, it } from 'vitest';
import { Forwarder } from '../../src/dataplane/forwarder.js';
import { DROPS_BASE, G } from '../../src/dataplane/contract/counters.js';
import { FRAME_SLOT_BYTES } from '../../src/dataplane/contract/limits.js';
import { OWNER_KIND } from '../../src/dataplane/contract/messages.js';
import { FRAGMENT_QUERY_BASE, writeFragmentOwnerKey } from '../../src/dataplane/fragment-owner.js';
import { Drop } from '../../src/packet/drop-reasons.js';
import { buildFrame, type FrameSpec } from '../../src/packet/build.js';
import { ipToBytes } from '../../src/packet/address.js';
import { CLIENT4, CLIENT6 } from '../fixtures/malformed-frames.js';
import { FRAG_VIP4, FRAG_VIP6, MODES, dsrFrame, first4, first6, goldenSpec, ipipFrame, later4, later6, tablePick, type Mode } from '../fixtures/forward-golden.js';

const NOW = 1000;
const ID = 0x2345;

interface Instance {
  fwd: Forwarder;
  tx: Buffer;
  released: string[];
  published: { kind: number; key: Uint8Array; backendId: number }[];
  queries: { qid: number; kind: number; key: Uint8Array }[];
}

function instance(mode: Mode, sync: boolean): Instance {
  const fwd = new Forwarder({ flowCapacity: 1024, tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000, tokenCapacity: 1024, affinityCapacity: 1024 });
  fwd.apply(goldenSpec(mode));
  const releaseTx = Buffer.alloc(FRAME_SLOT_BYTES);
  const i: Instance = { fwd, tx: Buffer.alloc(FRAME_SLOT_BYTES), released: [], published: [], queries: [] };
  fwd.setFragmentRelease(releaseTx, (n) => i.released.push(releaseTx.subarray(0, n).toString('hex')));
  if (sync) {
    fwd.setOwnerQuery((qid, kind, key) => i.queries.push({ qid, kind, key }));
    fwd.setPublishNow((kind, key, backendId) => i.published.push({ kind, key, backendId }));
  }
  return i;
}

/** The wire key by its definition: version, protocol 17, identification (32 bits), source, destination. */
function expectedKey(family: 4 | 6): Uint8Array {
  const [src, dst] = family === 4 ? [CLIENT4, FRAG_VIP4] : [CLIENT6, FRAG_VIP6];
  return Uint8Array.from([family, 17, 0, 0, ID >>> 8, ID & 0xff, ...ipToBytes(src), ...ipToBytes(dst)]);
}

const cases = MODES.flatMap((mode) => [4, 6].map((family) => ({ mode, family: family as 4 | 6 })));

describe('a datagram split across two instances', () => {
  it.each(cases)('$mode, IPv$family: the later fragment asks the owner and follows the first to its backend', ({ mode, family }) => {
    const first: FrameSpec = (family === 4 ? first4 : first6)(ID, 43001);
    const later: FrameSpec = (family === 4 ? later4 : later6)(ID);
    const be = tablePick(family === 4 ? 'frag4' : 'frag6', first);
    const a = instance(mode, true);
    const b = instance(mode, true);
    const f = buildFrame(first);
    expect(a.fwd.forward(f, f.length, a.tx, NOW)).toBeGreaterThan(0);
    expect(a.published).toHaveLength(1);
    expect(a.published[0].kind).toBe(OWNER_KIND.fragment);
    expect(Buffer.from(a.published[0].key).toString('hex')).toBe(Buffer.from(expectedKey(family)).toString('hex'));
    expect(a.published[0].backendId).toBe(be);

    const l = buildFrame(later);
    expect(b.fwd.forward(l, l.length, b.tx, NOW)).toBe(0);
    // A second later fragment of the same datagram waits on the same query.
    expect(b.fwd.forward(l, l.length, b.tx, NOW)).toBe(0);
    expect(b.queries).toHaveLength(1);
    expect(b.queries[0].kind).toBe(OWNER_KIND.fragment);
    expect(b.queries[0].qid).toBeGreaterThanOrEqual(FRAGMENT_QUERY_BASE);
    expect(Buffer.from(b.queries[0].key)).toEqual(Buffer.from(a.published[0].key));

    // The owner answers with what A published.
    b.fwd.answer(b.queries[0].qid, a.published[0].backendId, NOW + 2, b.tx, () => undefined);
    const want = mode === 'dsr-l2' ? dsrFrame(later, be) : ipipFrame(later, be, 1, 'untagged', first);
    expect(b.released).toHaveLength(2);
    if (mode === 'ipip' && family === 6) {
      // B never saw the 5-tuple: its outer IPv6 flow label comes from the datagram, not the flow. Everything else is exact.
      const got = Buffer.from(b.released[0], 'hex');
      got.writeUInt32BE((got.readUInt32BE(14) & 0xfff00000) | (want.readUInt32BE(14) & 0x000fffff), 14);
      expect(got.toString('hex')).toBe(want.toString('hex'));
    } else {
      expect(b.released[0]).toBe(want.toString('hex'));
    }
    expect(b.fwd.counters[G.fragOwnerQueries]).toBe(1);
    expect(b.fwd.counters[G.fragOwnerHits]).toBe(1);
    expect(a.fwd.counters[G.fragOwnerPublished]).toBe(1);
    // The datagram is recorded at B now: a third fragment follows at once.
    expect(b.fwd.forward(l, l.length, b.tx, NOW + 3)).toBeGreaterThan(0);
    b.fwd.expireFragments(NOW + 10_000);
    expect(b.fwd.counters[DROPS_BASE + Drop.fragment_unmatched]).toBe(0);
  });

  it.each(MODES.map((mode) => ({ mode })))('$mode: with fragment ownership off the split datagram is lost; on, it arrives (both counts)', ({ mode }) => {
    const run = (sync: boolean): { delivered: number; unmatched: number } => {
      const a = instance(mode, sync);
      const b = instance(mode, sync);
      let delivered = 0;
      for (let id = 1; id <= 20; id++) {
        const f = buildFrame(first4(id, 44000 + id));
        if (a.fwd.forward(f, f.length, a.tx, NOW) > 0) delivered++;
        const l = buildFrame(later4(id));
        if (b.fwd.forward(l, l.length, b.tx, NOW) > 0) delivered++;
      }
      for (const p of a.published) {
        const q = b.queries.find((x) => Buffer.from(x.key).equals(Buffer.from(p.key)));
        if (q) b.fwd.answer(q.qid, p.backendId, NOW + 1, b.tx, () => undefined);
      }
      delivered += b.released.length;
      b.fwd.expireFragments(NOW + 10_000);
      return { delivered, unmatched: b.fwd.counters[DROPS_BASE + Drop.fragment_unmatched] };
    };
    const off = run(false);
    const on = run(true);
    console.log(`${mode}: 20 datagrams split across 2 instances: fragments delivered ${on.delivered}/40 with ownership on, ${off.delivered}/40 off (unmatched drops ${on.unmatched} on, ${off.unmatched} off)`);
    expect(on).toEqual({ delivered: 40, unmatched: 0 });
    expect(off).toEqual({ delivered: 20, unmatched: 20 });
  });

  it('an answer naming no backend of this instance leaves the fragment to its hold (counted miss, then fragment_unmatched)', () => {
    const b = instance('dsr-l2', true);
    const l = buildFrame(later4(ID));
    b.fwd.forward(l, l.length, b.tx, NOW);
    b.fwd.answer(b.queries[0].qid, -1, NOW + 1, b.tx, () => undefined);
    // A late duplicate answer for the same query is ignored.
    b.fwd.answer(b.queries[0].qid, 12, NOW + 2, b.tx, () => undefined);
    expect(b.released).toEqual([]);
    expect(b.fwd.counters[G.fragOwnerMisses]).toBe(1);
    b.fwd.expireFragments(NOW + 10_000);
    expect(b.fwd.counters[DROPS_BASE + Drop.fragment_unmatched]).toBe(1);
  });

  it('the wire key is the datagram key, for every fragment of it', () => {
    const key = new Uint32Array(10);
    key[0] = (4 << 8) | 17;
    key[1] = ID;
    key[2] = 0x0a000001;
    key[6] = 0xc6336446;
    const out = new Uint8Array(38);
    expect(writeFragmentOwnerKey(key, out)).toBe(14);
    expect(Buffer.from(out.subarray(0, 14)).toString('hex')).toBe('0411000023450a000001c6336446');
  });
});
