import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  LEARN_COLLISION,
  LEARN_NEW,
  LEARN_REFRESHED,
  MPTCP_ACTION_JOIN_SYN,
  MPTCP_ACTION_LEARN_V0,
  MPTCP_ACTION_LEARN_V1,
  MptcpTokenTable,
  mptcpActionToken,
  mptcpInspect,
} from '../../src/dataplane/mptcp-tokens.js';
import { MptcpInfo } from '../../src/packet/mptcp-options.js';
import { LINUX_SERVER_TOKEN, SERVER_KEY, buildMptcpCases } from '../fixtures/mptcp-frames.js';

const IDLE = 10_000;

type MakeTable = (capacity?: number, probeWindow?: number) => MptcpTokenTable;
const SEED = 0x1234abcd;
const MAKERS: Record<'private' | 'shared', MakeTable> = {
  private: (capacity = 64, probeWindow = 8) => new MptcpTokenTable({ capacity, probeWindow, idleTimeoutMs: IDLE, seed: SEED }),
  shared: (capacity = 64, probeWindow = 8) => MptcpTokenTable.over(MptcpTokenTable.sharedBuffer(capacity, { probeWindow, seed: SEED }), { idleTimeoutMs: IDLE }),
};
/** The table maker of the running block (the captured-connection cases use a private one). */
let table: MakeTable = MAKERS.private;

/** `count` distinct tokens whose probe window starts at the same slot. */
function sameBucketTokens(t: MptcpTokenTable, count: number): number[] {
  const want = t.bucketOf(0x1000);
  const out: number[] = [];
  for (let tok = 0x1000; out.length < count; tok++) if (t.bucketOf(tok) === want) out.push(tok);
  return out;
}

describe('MptcpTokenTable: construction', () => {
  const bad = [
    { name: 'capacity not a power of two', opts: { capacity: 100 } },
    { name: 'capacity 0', opts: { capacity: 0 } },
    { name: 'probe window larger than capacity', opts: { capacity: 4, probeWindow: 8 } },
    { name: 'idle timeout 0', opts: { capacity: 8, idleTimeoutMs: 0 } },
  ];
  for (const b of bad) {
    it(`rejects ${b.name}`, () => {
      expect(() => new MptcpTokenTable(b.opts)).toThrow(RangeError);
    });
  }
});

/** The same cases over a private table and over a SharedArrayBuffer one (the layout workers share). */
for (const [mode, make] of Object.entries(MAKERS)) {
  describe(`over a ${mode} buffer`, () => {
    beforeAll(() => {
      table = make;
    });

    describe('MptcpTokenTable: learn and lookup', () => {
      interface Step {
        op: 'learn' | 'lookup';
        token: number;
        backend?: number;
        version?: number;
        at: number;
        want: number;
      }
      const scenarios: { name: string; steps: Step[]; counters: Record<string, number> }[] = [
        {
          name: 'unknown token misses',
          steps: [{ op: 'lookup', token: 0x464b4775, at: 0, want: -1 }],
          counters: { active: 0, learnedV1: 0, lookupMisses: 1 },
        },
        {
          name: 'learned v1 token is found',
          steps: [
            { op: 'learn', token: 0x464b4775, backend: 3, version: 1, at: 0, want: LEARN_NEW },
            { op: 'lookup', token: 0x464b4775, at: 5, want: 3 },
          ],
          counters: { active: 1, learnedV1: 1, learnedV0: 0, lookupHits: 1 },
        },
        {
          name: 'learned v0 token is found and counted as v0',
          steps: [
            { op: 'learn', token: 0xdd5783bc, backend: 0, version: 0, at: 0, want: LEARN_NEW },
            { op: 'lookup', token: 0xdd5783bc, at: 1, want: 0 },
          ],
          counters: { active: 1, learnedV0: 1, learnedV1: 0 },
        },
        {
          name: 'retransmitted key refreshes, idempotent',
          steps: [
            { op: 'learn', token: 7, backend: 2, version: 1, at: 0, want: LEARN_NEW },
            { op: 'learn', token: 7, backend: 2, version: 1, at: 10, want: LEARN_REFRESHED },
            { op: 'learn', token: 7, backend: 2, version: 1, at: 20, want: LEARN_REFRESHED },
            { op: 'lookup', token: 7, at: 30, want: 2 },
          ],
          counters: { active: 1, learnedV1: 1, refreshed: 2, collisions: 0 },
        },
        {
          name: 'collision: same token, other backend; first owner kept',
          steps: [
            { op: 'learn', token: 0xabcdef01, backend: 1, version: 1, at: 0, want: LEARN_NEW },
            { op: 'learn', token: 0xabcdef01, backend: 2, version: 1, at: 1, want: LEARN_COLLISION },
            { op: 'lookup', token: 0xabcdef01, at: 2, want: 1 },
          ],
          counters: { active: 1, learnedV1: 1, collisions: 1, refreshed: 0 },
        },
        {
          name: 'token 0 and token 0xffffffff are ordinary tokens',
          steps: [
            { op: 'lookup', token: 0, at: 0, want: -1 },
            { op: 'learn', token: 0, backend: 4, version: 1, at: 0, want: LEARN_NEW },
            { op: 'learn', token: 0xffffffff, backend: 5, version: 1, at: 0, want: LEARN_NEW },
            { op: 'lookup', token: 0, at: 1, want: 4 },
            { op: 'lookup', token: 0xffffffff, at: 1, want: 5 },
          ],
          counters: { active: 2, learnedV1: 2 },
        },
        {
          name: 'an expired owner is replaced, not a collision',
          steps: [
            { op: 'learn', token: 9, backend: 1, version: 1, at: 0, want: LEARN_NEW },
            { op: 'learn', token: 9, backend: 2, version: 1, at: IDLE + 1, want: LEARN_NEW },
            { op: 'lookup', token: 9, at: IDLE + 2, want: 2 },
          ],
          counters: { active: 1, learnedV1: 2, collisions: 0, expired: 1 },
        },
      ];
      for (const sc of scenarios) {
        it(sc.name, () => {
          const t = table();
          for (const s of sc.steps) {
            if (s.op === 'learn') expect(t.learn(s.token, s.backend ?? 0, 0, s.version ?? 1, s.at)).toBe(s.want);
            else expect(t.lookup(s.token, s.at)).toBe(s.want);
          }
          const got: Record<string, number> = {};
          for (const k of Object.keys(sc.counters)) got[k] = (t as unknown as Record<string, number>)[k];
          expect(got).toEqual(sc.counters);
        });
      }

      it('lookupSlot exposes backend, service and version of the entry', () => {
        const t = table();
        t.learn(0x464b4775, 11, 3, 1, 100);
        t.learn(0xdd5783bc, 12, 4, 0, 100);
        const a = t.lookupSlot(0x464b4775, 101);
        const b = t.lookupSlot(0xdd5783bc, 101);
        expect([t.backendAt(a), t.serviceAt(a), t.versionAt(a), t.lastSeenAt(a)]).toEqual([11, 3, 1, 100]);
        expect([t.backendAt(b), t.serviceAt(b), t.versionAt(b)]).toEqual([12, 4, 0]);
      });
    });

    describe('MptcpTokenTable: lifetime', () => {
      it('an entry expires after the idle timeout without touches', () => {
        const t = table();
        t.learn(42, 1, 0, 1, 1000);
        expect(t.lookup(42, 1000 + IDLE)).toBe(1);
        expect(t.lookup(42, 1000 + IDLE + 1)).toBe(-1);
        expect(t.active).toBe(0);
        expect(t.expired).toBe(1);
      });

      it('touch keeps an entry alive as long as its subflows are seen', () => {
        const t = table();
        t.learn(42, 1, 0, 1, 0);
        for (let now = 5000; now <= 5 * IDLE; now += 5000) expect(t.touch(42, now)).toBe(true);
        expect(t.lookup(42, 5 * IDLE + IDLE)).toBe(1);
        expect(t.lookup(42, 5 * IDLE + IDLE + 1)).toBe(-1);
        expect(t.touch(42, 5 * IDLE + IDLE + 2)).toBe(false);
      });

      it('touch with an older time (flow-table sweep order) never moves last-seen back', () => {
        const t = table();
        t.learn(42, 1, 0, 1, 5000);
        t.touch(42, 1000);
        expect(t.lastSeenAt(t.lookupSlot(42, 5000))).toBe(5000);
        t.learn(42, 1, 0, 1, 2000);
        expect(t.lastSeenAt(t.lookupSlot(42, 5000))).toBe(5000);
      });

      it('remove forgets a token; removing twice reports false', () => {
        const t = table();
        t.learn(42, 1, 0, 1, 0);
        expect(t.remove(42)).toBe(true);
        expect(t.remove(42)).toBe(false);
        expect(t.lookup(42, 1)).toBe(-1);
        expect(t.active).toBe(0);
      });

      it('sweep removes expired entries within its slot budget and resumes where it stopped', () => {
        const t = table(64);
        for (let i = 0; i < 20; i++) t.learn(1000 + i * 7919, i, 0, 1, 0);
        t.learn(5, 99, 0, 1, IDLE); // still live at the sweep time below
        expect(t.active).toBe(21);
        const now = IDLE + 1;
        let removed = 0;
        for (let i = 0; i < 4; i++) removed += t.sweep(now, 16); // 4 x 16 = the whole table
        expect(removed).toBe(20);
        expect(t.active).toBe(1);
        expect(t.expired).toBe(20);
        expect(t.lookup(5, now)).toBe(99);
        expect(t.sweep(now, 1_000_000)).toBe(0);
      });

      it('entries() lists live entries only', () => {
        const t = table();
        t.learn(1, 10, 2, 1, 0);
        t.learn(2, 20, 3, 0, IDLE);
        const list = [...t.entries(IDLE + 1)];
        expect(list).toEqual([{ token: 2, backendId: 20, serviceIndex: 3, version: 0, lastSeenMs: IDLE }]);
      });
    });

    describe('MptcpTokenTable: bounds', () => {
      it('a full probe window evicts its least recently seen entry and counts it', () => {
        const t = table(64, 4);
        const toks = sameBucketTokens(t, 5);
        for (let i = 0; i < 4; i++) expect(t.learn(toks[i], i, 0, 1, 100 + i)).toBe(LEARN_NEW);
        t.touch(toks[0], 200); // toks[1] is now the oldest
        expect(t.learn(toks[4], 4, 0, 1, 300)).toBe(LEARN_NEW);
        expect(t.evictions).toBe(1);
        expect(t.active).toBe(4);
        expect(t.lookup(toks[1], 301)).toBe(-1);
        for (const i of [0, 2, 3, 4]) expect(t.lookup(toks[i], 301)).toBe(i);
      });

      it('an expired entry in a full window is reused without an eviction', () => {
        const t = table(64, 4);
        const toks = sameBucketTokens(t, 5);
        t.learn(toks[0], 0, 0, 1, 0);
        for (let i = 1; i < 4; i++) t.learn(toks[i], i, 0, 1, IDLE);
        expect(t.learn(toks[4], 4, 0, 1, IDLE + 1)).toBe(LEARN_NEW);
        expect(t.evictions).toBe(0);
        expect(t.expired).toBe(1);
        expect(t.active).toBe(4);
      });

      it('a token is found again after holes open in its window (no tombstones needed)', () => {
        const t = table(64, 4);
        const toks = sameBucketTokens(t, 3);
        for (let i = 0; i < 3; i++) t.learn(toks[i], i, 0, 1, 0);
        t.remove(toks[0]);
        expect(t.lookup(toks[2], 1)).toBe(2);
        expect(t.learn(toks[2], 2, 0, 1, 2)).toBe(LEARN_REFRESHED); // not duplicated into the hole
        expect(t.active).toBe(2);
      });

      it('capacity is never exceeded: 16x capacity distinct tokens', () => {
        const t = table(256, 8);
        for (let i = 0; i < 256 * 16; i++) t.learn((Math.imul(i, 0x9e3779b1) ^ 0x55aa) >>> 0, i & 63, 0, 1, i);
        expect(t.active).toBeLessThanOrEqual(256);
        expect(t.active).toBe([...t.entries(256 * 16)].length);
        expect(t.learnedV1 - t.evictions).toBe(t.active);
        expect(t.evictions).toBeGreaterThan(0);
      });
    });
  });
}

describe('MptcpTokenTable with mptcpInspect: the captured Linux connection', () => {
  const cases = buildMptcpCases();
  for (const family of [4, 6] as const) {
    it(`IPv${family}: third ACK learns 464b4775 for the flow's backend; the join SYN is steered to it`, () => {
      const t = table();
      const info = new MptcpInfo();
      const ack = cases.find((c) => c.family === family && c.name.includes('third ACK, server key a160'));
      const join = cases.find((c) => c.family === family && c.name.includes('46 4b 47 75'));
      if (!ack || !join) throw new Error('fixture missing');

      const a1 = mptcpInspect(ack.built.frame, ack.built.parsed, info);
      expect(a1).toBe(MPTCP_ACTION_LEARN_V1);
      const token = mptcpActionToken(ack.built.frame, a1, info);
      expect(token).toBe(LINUX_SERVER_TOKEN);
      expect(t.learn(token, 7, 0, info.version, 1000)).toBe(LEARN_NEW);

      const a2 = mptcpInspect(join.built.frame, join.built.parsed, info);
      expect(a2).toBe(MPTCP_ACTION_JOIN_SYN);
      expect(t.lookup(mptcpActionToken(join.built.frame, a2, info), 1001)).toBe(7);
    });
  }

  it('a v0 third ACK learns the SHA-1 token of the server key', () => {
    const info = new MptcpInfo();
    const ack = cases.find((c) => c.family === 4 && c.name === 'MP_CAPABLE v0 third ACK, length 20, both keys');
    if (!ack) throw new Error('fixture missing');
    const action = mptcpInspect(ack.built.frame, ack.built.parsed, info);
    expect(action).toBe(MPTCP_ACTION_LEARN_V0);
    const want = createHash('sha1').update(Uint8Array.from(SERVER_KEY)).digest().readUInt32BE(0);
    expect(mptcpActionToken(ack.built.frame, action, info)).toBe(want);
  });

  it('non-learning actions give no token', () => {
    const info = new MptcpInfo();
    const plain = cases.find((c) => c.family === 4 && c.name.startsWith('plain TCP'));
    if (!plain) throw new Error('fixture missing');
    const action = mptcpInspect(plain.built.frame, plain.built.parsed, info);
    expect(mptcpActionToken(plain.built.frame, action, info)).toBe(-1);
  });
});
