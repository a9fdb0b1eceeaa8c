/**
 * The Announcer's decisions, driven with a fake speaker that records what it was told:
 * announced while the data plane is up, a VIP has >= 1 serving backend and the instance is not
 * drained; withdrawn when any of those stops; failed applies retried; a dead speaker restarted.
 * Also servingByVip (the per-VIP count the daemon feeds it).
 */
import { describe, expect, it } from 'vitest';
import { Announcer, vipVerdict, type AnnouncerLog } from '../../src/announce/announcer.js';
import { servingByVip } from '../../src/announce/serving.js';
import { FakeSpeaker } from '../fixtures/fake-speaker.js';

const quiet: AnnouncerLog = { info: () => undefined, warn: () => undefined, error: () => undefined };
const V4 = '198.51.100.10';
const V6 = '2001:db8:100::10';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function started(): Promise<{ a: Announcer; sp: FakeSpeaker }> {
  const sp = new FakeSpeaker();
  const a = new Announcer({ speaker: sp, log: quiet, retryMs: 20, maxRestartMs: 40 });
  await a.start();
  return { a, sp };
}
const sorted = (s: Set<string>): string[] => [...s].sort();

describe('vipVerdict', () => {
  const cases: { name: string; up: boolean; drained: boolean; serving: number; want: string }[] = [
    { name: 'up, serving, not drained', up: true, drained: false, serving: 1, want: 'announced' },
    { name: 'data plane down', up: false, drained: false, serving: 3, want: 'dataplane-down' },
    { name: 'no serving backend', up: true, drained: false, serving: 0, want: 'no-serving-backend' },
    { name: 'drained', up: true, drained: true, serving: 3, want: 'drained' },
    { name: 'down and drained: down wins', up: false, drained: true, serving: 0, want: 'dataplane-down' },
  ];
  for (const c of cases) it(c.name, () => expect(vipVerdict({ dataPlaneUp: c.up, drained: c.drained, servingBackends: c.serving })).toBe(c.want));
});

describe('Announcer', () => {
  it('announces nothing until the data plane is up, then every VIP with a serving backend', async () => {
    const { a, sp } = await started();
    a.setServing(new Map([[V4, 2], [V6, 0]]));
    await a.settled();
    expect(sorted(sp.announced)).toEqual([]);
    expect(sp.known.sort()).toEqual([V6, V4].sort());
    a.setDataPlane(true);
    await a.settled();
    expect(sorted(sp.announced)).toEqual([V4]);
    a.setServing(new Map([[V4, 2], [V6, 1]]));
    await a.settled();
    expect(sorted(sp.announced)).toEqual([V6, V4].sort());
  });

  it('withdraws a VIP whose last serving backend goes, re-announces when one is back', async () => {
    const { a, sp } = await started();
    a.setDataPlane(true);
    a.setServing(new Map([[V4, 1], [V6, 1]]));
    await a.settled();
    a.setServing(new Map([[V4, 0], [V6, 1]]));
    await a.settled();
    expect(sorted(sp.announced)).toEqual([V6]);
    expect((await a.status()).vips.find((v) => v.vip === V4)?.verdict).toBe('no-serving-backend');
    a.setServing(new Map([[V4, 1], [V6, 1]]));
    await a.settled();
    expect(sorted(sp.announced)).toEqual([V6, V4].sort());
  });

  it('withdraws everything when the data plane dies and announces again when it is back', async () => {
    const { a, sp } = await started();
    a.setServing(new Map([[V4, 3]]));
    a.setDataPlane(true);
    await a.settled();
    expect(sorted(sp.announced)).toEqual([V4]);
    a.setDataPlane(false);
    await a.settled();
    expect(sorted(sp.announced)).toEqual([]);
    a.setDataPlane(true);
    await a.settled();
    expect(sorted(sp.announced)).toEqual([V4]);
  });

  it('drain withdraws every VIP, undrain announces them again; status says drained', async () => {
    const { a, sp } = await started();
    a.setServing(new Map([[V4, 3], [V6, 3]]));
    a.setDataPlane(true);
    await a.settled();
    a.drain();
    await a.settled();
    expect(sorted(sp.announced)).toEqual([]);
    const st = await a.status();
    expect(st.drained).toBe(true);
    expect(st.vips.map((v) => v.verdict)).toEqual(['drained', 'drained']);
    a.undrain();
    await a.settled();
    expect(sorted(sp.announced)).toEqual([V6, V4].sort());
  });

  it('a VIP removed from the config is dropped from the speaker', async () => {
    const { a, sp } = await started();
    a.setDataPlane(true);
    a.setServing(new Map([[V4, 1], [V6, 1]]));
    await a.settled();
    a.setServing(new Map([[V4, 1]]));
    await a.settled();
    expect(sp.known).toEqual([V4]);
    expect(sorted(sp.announced)).toEqual([V4]);
  });

  it('coalesces a burst of changes: the latest state wins', async () => {
    const { a, sp } = await started();
    a.setDataPlane(true);
    for (let i = 0; i < 50; i++) a.setServing(new Map([[V4, i % 2]]));
    a.setServing(new Map([[V4, 1]]));
    await a.settled();
    expect(sorted(sp.announced)).toEqual([V4]);
    expect(sp.applies).toBeLessThan(10);
  });

  it('retries a failed apply', async () => {
    const { a, sp } = await started();
    sp.failNext = 2;
    a.setDataPlane(true);
    a.setServing(new Map([[V4, 1]]));
    await a.settled();
    expect(sorted(sp.announced)).toEqual([]);
    expect((await a.status()).lastError).toMatch(/connection refused/);
    for (let i = 0; i < 50 && sp.announced.size === 0; i++) await sleep(10);
    expect(sorted(sp.announced)).toEqual([V4]);
    expect((await a.status()).lastError).toBeNull();
  });

  it('restarts a speaker that died and announces again', async () => {
    const { a, sp } = await started();
    a.setDataPlane(true);
    a.setServing(new Map([[V4, 1]]));
    await a.settled();
    sp.die();
    expect((await a.status()).speakerUp).toBe(false);
    for (let i = 0; i < 50 && sp.announced.size === 0; i++) await sleep(10);
    expect(sp.starts).toBe(2);
    expect(sorted(sp.announced)).toEqual([V4]);
    await a.stop();
  });

  it('stop stops the speaker (which withdraws everything)', async () => {
    const { a, sp } = await started();
    a.setDataPlane(true);
    a.setServing(new Map([[V4, 1]]));
    await a.settled();
    await a.stop();
    expect(sp.stopped).toBe(true);
    a.setServing(new Map([[V4, 2]]));
    await a.settled();
    expect(sorted(sp.announced)).toEqual([]);
  });
});

describe('servingByVip', () => {
  const services = [
    { name: 'web4', vip: V4 },
    { name: 'dns4', vip: V4 },
    { name: 'web6', vip: V6 },
  ];
  const spec = (serving: Record<number, boolean[]>) => ({
    services: [
      { id: 1, name: 'web4' },
      { id: 2, name: 'dns4' },
      { id: 3, name: 'web6' },
    ],
    backends: Object.entries(serving).flatMap(([sid, list]) => list.map((s) => ({ serviceId: Number(sid), serving: s }))),
  });
  const cases: { name: string; serving: Record<number, boolean[]>; want: [string, number][] }[] = [
    { name: 'sums every service of a VIP', serving: { 1: [true, true], 2: [true], 3: [true, false] }, want: [[V4, 3], [V6, 1]] },
    { name: 'one service of a VIP still serving keeps the VIP', serving: { 1: [false, false], 2: [true], 3: [false] }, want: [[V4, 1], [V6, 0]] },
    { name: 'nothing serving: every VIP present with 0', serving: { 1: [false], 2: [], 3: [] }, want: [[V4, 0], [V6, 0]] },
  ];
  for (const c of cases) it(c.name, () => expect([...servingByVip({ services, spec: spec(c.serving) })].sort()).toEqual(c.want.sort()));
});
