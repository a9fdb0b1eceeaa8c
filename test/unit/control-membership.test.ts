/**
 * Membership with an injected clock: heartbeat schedule, up after a heartbeat, down after
 * failureMs without one, back up, live-set events, restarts and generation mismatches.
 */
import { describe, expect, it } from 'vitest';
import type { HeartbeatBody } from '../../src/control/codec.js';
import { Membership } from '../../src/control/membership.js';
import { hashInstanceId } from '../../src/hash/rendezvous.js';

const HB = 100;
const FAIL = 350;

function setup(peerIds = ['lb-c', 'lb-b']): { m: Membership; sent: { peer: string; body: HeartbeatBody }[]; changes: string[][]; restarts: string[] } {
  const sent: { peer: string; body: HeartbeatBody }[] = [];
  const changes: string[][] = [];
  const restarts: string[] = [];
  const m = new Membership({ selfId: 'lb-a', peerIds: [...peerIds, 'lb-a'], heartbeatMs: HB, failureMs: FAIL, sendHeartbeat: (peer, body) => sent.push({ peer, body }) });
  m.onChange((live) => changes.push([...live]));
  m.onRestart((id) => restarts.push(id));
  return { m, sent, changes, restarts };
}

const hb = (generation = 1, backendSetHash = 10n, live: string[] = []): HeartbeatBody => ({ generation, backendSetHash, live: live.map(hashInstanceId) });

describe('Membership', () => {
  it('starts with only itself live and ignores its own id in the peer list', () => {
    const { m } = setup();
    expect(m.live()).toEqual(['lb-a']);
    expect(m.peers().map((p) => p.id)).toEqual(['lb-c', 'lb-b']);
  });

  it('sends heartbeats to every peer every heartbeatMs, and at once when asked', () => {
    const { m, sent } = setup();
    m.setLocal(4, 99n);
    const steps: { t: number; sends: number }[] = [
      { t: 0, sends: 2 },
      { t: HB - 1, sends: 0 },
      { t: HB, sends: 2 },
      { t: HB + 50, sends: 0 },
      { t: 2 * HB + 7, sends: 2 },
    ];
    for (const s of steps) {
      sent.length = 0;
      m.tick(s.t);
      expect(sent.length, `t=${s.t}`).toBe(s.sends);
    }
    expect(sent[0].body).toEqual({ generation: 4, backendSetHash: 99n, live: [hashInstanceId('lb-a')] });
    sent.length = 0;
    m.heartbeatSoon();
    m.tick(2 * HB + 8);
    expect(sent.map((x) => x.peer).sort()).toEqual(['lb-b', 'lb-c']);
  });

  it('up after a heartbeat, down after failureMs without one, back up after the next', () => {
    const { m, changes } = setup();
    const t0 = 1000;
    m.onHeartbeat('lb-b', 1n, hb(), t0);
    expect(m.live()).toEqual(['lb-a', 'lb-b']);
    m.tick(t0 + FAIL - 1);
    expect(m.isUp('lb-b')).toBe(true);
    m.tick(t0 + FAIL);
    expect(m.isUp('lb-b')).toBe(false);
    expect(m.live()).toEqual(['lb-a']);
    m.onHeartbeat('lb-b', 1n, hb(), t0 + FAIL + 5);
    expect(m.live()).toEqual(['lb-a', 'lb-b']);
    expect(changes).toEqual([['lb-a', 'lb-b'], ['lb-a'], ['lb-a', 'lb-b']]);
    expect(m.peers().find((p) => p.id === 'lb-b')?.downs).toBe(1);
  });

  it('keeps a peer up while heartbeats arrive within failureMs', () => {
    const { m, changes } = setup();
    for (let t = 0; t <= 10 * HB; t += HB) {
      m.onHeartbeat('lb-c', 1n, hb(), t);
      m.tick(t + HB - 1);
    }
    expect(m.isUp('lb-c')).toBe(true);
    expect(changes).toEqual([['lb-a', 'lb-c']]);
  });

  it('orders the live set by id whatever order peers came up in', () => {
    const { m } = setup(['lb-d', 'lb-b', 'lb-c']);
    for (const id of ['lb-d', 'lb-b', 'lb-c']) m.onHeartbeat(id, 1n, hb(), 5);
    expect(m.live()).toEqual(['lb-a', 'lb-b', 'lb-c', 'lb-d']);
    expect(Array.from(m.liveHashes())).toEqual(['lb-a', 'lb-b', 'lb-c', 'lb-d'].map(hashInstanceId));
  });

  it('ignores heartbeats of ids that are not configured peers', () => {
    const { m, changes } = setup();
    m.onHeartbeat('lb-x', 1n, hb(), 5);
    expect(m.live()).toEqual(['lb-a']);
    expect(changes).toEqual([]);
  });

  it('reports a new incarnation of an up peer as a restart, without a live-set change', () => {
    const { m, changes, restarts } = setup();
    m.onHeartbeat('lb-b', 1n, hb(), 0);
    m.onHeartbeat('lb-b', 1n, hb(), 50);
    m.onHeartbeat('lb-b', 2n, hb(), 100);
    expect(restarts).toEqual(['lb-b']);
    expect(changes).toEqual([['lb-a', 'lb-b']]);
    expect(m.peers().find((p) => p.id === 'lb-b')).toMatchObject({ restarts: 1, incarnation: 2n });
  });

  it('lists up peers whose backend-set hash differs as generation mismatches', () => {
    const { m } = setup();
    m.setLocal(3, 10n);
    m.onHeartbeat('lb-b', 1n, hb(3, 10n), 0);
    m.onHeartbeat('lb-c', 1n, hb(9, 11n), 0);
    expect(m.generationMismatch()).toEqual([{ id: 'lb-c', generation: 9, backendSetHash: 11n }]);
    m.setLocal(4, 11n);
    expect(m.generationMismatch().map((x) => x.id)).toEqual(['lb-b']);
    m.tick(FAIL); // both down: a down peer is not a mismatch
    expect(m.generationMismatch()).toEqual([]);
  });

  it('compares live views', () => {
    const { m } = setup();
    m.onHeartbeat('lb-b', 1n, hb(1, 1n, ['lb-b', 'lb-a']), 0);
    m.onHeartbeat('lb-c', 1n, hb(1, 1n, ['lb-c']), 0);
    // lb-a sees all three; lb-b only itself and lb-a
    expect(m.sameView('lb-b')).toBe(false);
    m.onHeartbeat('lb-b', 1n, hb(1, 1n, ['lb-c', 'lb-b', 'lb-a']), 1);
    expect(m.sameView('lb-b')).toBe(true);
  });

  it('refuses failureMs not above 2 x heartbeatMs', () => {
    expect(() => new Membership({ selfId: 'a', peerIds: [], heartbeatMs: 100, failureMs: 200, sendHeartbeat: () => {} })).toThrow(/more than 2 x/);
  });
});

describe('Membership: when a backend set last changed in the cluster (decides whether UDP asks owners)', () => {
  type Step = { at: number; who: 'self' | 'lb-b'; incarnation?: bigint; generation: number; hash: bigint };
  const cases: { name: string; steps: Step[]; changedAt: number | undefined; events: string[] }[] = [
    { name: 'steady state: the same generation in every heartbeat is no change', steps: [1, 2, 3].map((i) => ({ at: i * HB, who: 'lb-b' as const, generation: 1, hash: 10n })), changedAt: undefined, events: [] },
    { name: "a peer's first heartbeat tells nothing of a change", steps: [{ at: 5, who: 'lb-b', generation: 7, hash: 70n }], changedAt: undefined, events: [] },
    {
      name: 'a starting peer: generation 0 (none yet), then its first table, is no change',
      steps: [
        { at: 0, who: 'lb-b', generation: 0, hash: 0n },
        { at: 100, who: 'lb-b', generation: 1, hash: 10n },
      ],
      changedAt: undefined,
      events: [],
    },
    {
      name: 'a peer reporting a new generation on the same backend set is no change (no flow moves)',
      steps: [
        { at: 0, who: 'lb-b', generation: 1, hash: 10n },
        { at: 250, who: 'lb-b', generation: 2, hash: 10n },
      ],
      changedAt: undefined,
      events: [],
    },
    {
      name: 'a peer back from a restart on the same backend set is no change',
      steps: [
        { at: 0, who: 'lb-b', generation: 3, hash: 10n },
        { at: 900, who: 'lb-b', incarnation: 2n, generation: 1, hash: 10n },
      ],
      changedAt: undefined,
      events: [],
    },
    {
      name: 'a peer reporting a new generation and backend set',
      steps: [
        { at: 0, who: 'lb-b', generation: 1, hash: 10n },
        { at: 250, who: 'lb-b', generation: 2, hash: 11n },
        { at: 350, who: 'lb-b', generation: 2, hash: 11n },
      ],
      changedAt: 250,
      events: ['lb-b'],
    },
    {
      name: 'a peer back from a restart on another backend set',
      steps: [
        { at: 0, who: 'lb-b', generation: 3, hash: 10n },
        { at: 900, who: 'lb-b', incarnation: 2n, generation: 1, hash: 12n },
      ],
      changedAt: 900,
      events: ['lb-b'],
    },
    { name: 'the first local generation (at start) is no change', steps: [{ at: 40, who: 'self', generation: 1, hash: 5n }], changedAt: undefined, events: [] },
    {
      name: 'a local change after the first',
      steps: [
        { at: 40, who: 'self', generation: 1, hash: 5n },
        { at: 60, who: 'self', generation: 2, hash: 6n },
        { at: 80, who: 'self', generation: 2, hash: 6n },
      ],
      changedAt: 60,
      events: ['lb-a'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { m } = setup();
      const events: string[] = [];
      m.onTableChange((id) => events.push(id));
      for (const s of c.steps) {
        if (s.who === 'self') m.setLocal(s.generation, s.hash, s.at);
        else m.onHeartbeat(s.who, s.incarnation ?? 1n, hb(s.generation, s.hash), s.at);
      }
      expect(m.tableChangedAt).toBe(c.changedAt);
      expect(events).toEqual(c.events);
    });
  }
});
