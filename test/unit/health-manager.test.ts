/**
 * HealthManager: scheduling, sharing, reloads and stop with fake timers and scripted probes;
 * then one end-to-end run against a real TCP server on 127.0.0.1 that goes away and comes back.
 */
import * as net from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HealthManager, probePhase, type HealthChangeDetail } from '../../src/health/manager.js';
import type { ProbeFn } from '../../src/health/probes.js';
import type { HealthState } from '../../src/health/state.js';
import { resolveCheck, targetKey, type HealthCheckInput, type HealthTarget, type ProbeResult } from '../../src/health/types.js';

const INTERVAL = 1000;

function target(address: string, port: number, check: Partial<HealthCheckInput> = {}): HealthTarget {
  return { address, port, check: resolveCheck({ type: 'tcp', intervalMs: INTERVAL, timeoutMs: 500, rise: 2, fall: 3, ...check }) };
}

interface Change {
  key: string;
  from: HealthState;
  to: HealthState;
  detail: HealthChangeDetail;
}

/** A probe whose answer per target key the test sets; records every call and its signal. */
function scriptedProbe(): {
  fn: ProbeFn;
  calls: { key: string; signal: AbortSignal | undefined }[];
  answer: Map<string, ProbeResult>;
  callsOf: (t: HealthTarget) => number;
} {
  const calls: { key: string; signal: AbortSignal | undefined }[] = [];
  const answer = new Map<string, ProbeResult>();
  const fn: ProbeFn = async (t, signal) => {
    const key = targetKey(t);
    calls.push({ key, signal });
    return answer.get(key) ?? { ok: true, latencyMs: 1 };
  };
  return { fn, calls, answer, callsOf: (t) => calls.filter((c) => c.key === targetKey(t)).length };
}

/** A probe that runs until the test settles it or its signal aborts. */
function hangingProbe(): { fn: ProbeFn; running: Map<string, (r: ProbeResult) => void>; started: string[]; maxConcurrent: () => number } {
  const running = new Map<string, (r: ProbeResult) => void>();
  const started: string[] = [];
  let max = 0;
  const fn: ProbeFn = (t, signal) =>
    new Promise<ProbeResult>((resolve) => {
      const key = targetKey(t);
      started.push(key);
      const settle = (r: ProbeResult): void => {
        running.delete(key);
        resolve(r);
      };
      running.set(key, settle);
      max = Math.max(max, running.size);
      signal?.addEventListener('abort', () => settle({ ok: false, error: 'aborted', latencyMs: 0 }), { once: true });
    });
  return { fn, running, started, maxConcurrent: () => max };
}

describe('HealthManager with fake timers', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('first probes are spread over one interval by a deterministic phase per key', async () => {
    const p = scriptedProbe();
    const m = new HealthManager({ probe: p.fn });
    const t = target('10.0.0.1', 80);
    const phase = probePhase(targetKey(t), INTERVAL);
    expect(phase).toBe(probePhase(targetKey(target('10.0.0.1', 80)), INTERVAL));
    expect(phase).toBeGreaterThanOrEqual(0);
    expect(phase).toBeLessThan(INTERVAL);
    m.setTargets([t]);
    m.start();
    if (phase > 0) {
      await vi.advanceTimersByTimeAsync(phase - 1);
      expect(p.callsOf(t)).toBe(0);
    }
    await vi.advanceTimersByTimeAsync(1);
    expect(p.callsOf(t)).toBe(1);
    await vi.advanceTimersByTimeAsync(INTERVAL * 4);
    expect(p.callsOf(t)).toBe(5);
    await m.stop();
  });

  it('shared targets probe once: the same check of one backend from two services', async () => {
    const p = scriptedProbe();
    const m = new HealthManager({ probe: p.fn });
    const svcA = target('10.0.0.1', 80, { type: 'http', path: '/health' });
    const svcB = target('10.0.0.1', 80, { type: 'http', path: '/health' });
    const other = target('10.0.0.1', 80, { type: 'http', path: '/other' });
    m.setTargets([svcA, svcB, other]);
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL * 10);
    const s = m.status();
    expect(s.targets.map((t) => [t.key, t.refs])).toEqual([
      [targetKey(svcA), 2],
      [targetKey(other), 1],
    ].sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)));
    // One probe per interval for the shared check, not one per service.
    expect(p.callsOf(svcA)).toBe(10);
    expect(p.callsOf(other)).toBe(10);
    expect(p.calls).toHaveLength(20);
    expect(s.targets.find((t) => t.key === targetKey(svcA))?.probes).toBe(10);
    await m.stop();
  });

  it('fall failures take a backend down, rise successes bring it back, onChange each time', async () => {
    const p = scriptedProbe();
    const changes: Change[] = [];
    const m = new HealthManager({ probe: p.fn, onChange: (key, from, to, detail) => changes.push({ key, from, to, detail }) });
    const t = target('10.0.0.1', 80);
    const key = targetKey(t);
    m.setTargets([t]);
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL * 2); // two successes: unknown -> up
    expect(m.stateOf(key)).toBe('up');
    p.answer.set(key, { ok: false, error: 'connect ECONNREFUSED 10.0.0.1:80', latencyMs: 1 });
    await vi.advanceTimersByTimeAsync(INTERVAL * 2);
    expect(m.stateOf(key)).toBe('up');
    expect(m.takesTraffic(t)).toBe(true);
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(m.stateOf(key)).toBe('down');
    expect(m.takesTraffic(t)).toBe(false);
    p.answer.delete(key);
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(m.stateOf(key)).toBe('down');
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(m.stateOf(key)).toBe('up');
    expect(changes.map((c) => [c.key, c.from, c.to, c.detail.trafficChanged, c.detail.error])).toEqual([
      [key, 'unknown', 'up', false, null],
      [key, 'up', 'down', true, 'connect ECONNREFUSED 10.0.0.1:80'],
      [key, 'down', 'up', true, null],
    ]);
    const st = m.status().targets[0];
    expect(st).toMatchObject({ state: 'up', probes: 7, failures: 3, transitionsToDown: 1, transitionsToUp: 2, lastError: 'connect ECONNREFUSED 10.0.0.1:80' });
    expect(st.lastChangeAt).toBe(changes[2].detail.at);
    await m.stop();
  });

  it('setTargets removes targets and stops probing them; the rest keep their state', async () => {
    const p = scriptedProbe();
    const m = new HealthManager({ probe: p.fn });
    const a = target('10.0.0.1', 80);
    const b = target('10.0.0.2', 80);
    const c = target('10.0.0.3', 80);
    p.answer.set(targetKey(b), { ok: false, error: 'down for the test', latencyMs: 1 });
    m.setTargets([a, b]);
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL * 4);
    expect(m.stateOf(targetKey(b))).toBe('down');
    const bTransitions = m.recordOf(targetKey(b))?.transitionsToDown;
    const aCalls = p.callsOf(a);
    m.setTargets([b, c]);
    expect(m.stateOf(targetKey(a))).toBeUndefined();
    expect(m.stateOf(targetKey(b))).toBe('down');
    expect(m.recordOf(targetKey(b))?.transitionsToDown).toBe(bTransitions);
    expect(m.stateOf(targetKey(c))).toBe('unknown');
    await vi.advanceTimersByTimeAsync(INTERVAL * 5);
    expect(p.callsOf(a)).toBe(aCalls);
    expect(p.callsOf(c)).toBe(5);
    expect(m.status().targets.map((t) => t.key)).toEqual([targetKey(b), targetKey(c)].sort());
    await m.stop();
  });

  it('removing a target aborts its running probe and ignores the result', async () => {
    const h = hangingProbe();
    const changes: Change[] = [];
    const m = new HealthManager({ probe: h.fn, onChange: (key, from, to, detail) => changes.push({ key, from, to, detail }) });
    const t = target('10.0.0.1', 80, { rise: 1, fall: 1 });
    m.setTargets([t]);
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(h.running.size).toBe(1);
    m.setTargets([]);
    await vi.advanceTimersByTimeAsync(0);
    expect(h.running.size).toBe(0);
    expect(changes).toEqual([]);
    expect(m.status()).toMatchObject({ inFlight: 0, targets: [] });
    await m.stop();
  });

  it('stop() stops everything: no probe runs after it, running probes are aborted', async () => {
    const h = hangingProbe();
    const m = new HealthManager({ probe: h.fn });
    const targets = [target('10.0.0.1', 80), target('10.0.0.2', 80), target('10.0.0.3', 80)];
    m.setTargets(targets);
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(h.running.size).toBe(3);
    await m.stop();
    expect(h.running.size).toBe(0);
    const started = h.started.length;
    await vi.advanceTimersByTimeAsync(INTERVAL * 20);
    expect(h.started.length).toBe(started);
    expect(vi.getTimerCount()).toBe(0);
    expect(m.status()).toMatchObject({ running: false, inFlight: 0 });
    // Targets and states survive; start() resumes probing.
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(h.started.length).toBe(started + 3);
    await m.stop();
  });

  it('setTargets before start() schedules nothing until start', async () => {
    const p = scriptedProbe();
    const m = new HealthManager({ probe: p.fn });
    m.setTargets([target('10.0.0.1', 80)]);
    await vi.advanceTimersByTimeAsync(INTERVAL * 3);
    expect(p.calls).toHaveLength(0);
    expect(m.stateOf(targetKey(target('10.0.0.1', 80)))).toBe('unknown');
  });

  it('bounded concurrency: at most maxInFlight probes run, the excess waits and is counted', async () => {
    const h = hangingProbe();
    const m = new HealthManager({ probe: h.fn, maxInFlight: 2 });
    const targets = [1, 2, 3, 4, 5].map((i) => target(`10.0.0.${i}`, 80));
    m.setTargets(targets);
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(m.status()).toMatchObject({ inFlight: 2, waiting: 3, deferred: 3 });
    // Each completion lets one waiting probe start, in arrival order, never more than two at once.
    for (let round = 0; round < 10 && new Set(h.started).size < 5; round++) {
      for (const settle of [...h.running.values()]) settle({ ok: true, latencyMs: 1 });
      await vi.advanceTimersByTimeAsync(0);
    }
    expect(new Set(h.started)).toEqual(new Set(targets.map(targetKey)));
    expect(h.maxConcurrent()).toBe(2);
    await m.stop();
  });

  it('a probe that throws or rejects counts as a failure', async () => {
    const cases: { name: string; fn: ProbeFn; error: string }[] = [
      { name: 'throws', fn: () => { throw new Error('boom'); }, error: 'boom' },
      { name: 'rejects', fn: () => Promise.reject(new Error('bang')), error: 'bang' },
    ];
    for (const c of cases) {
      const m = new HealthManager({ probe: c.fn });
      const t = target('10.0.0.1', 80, { fall: 1 });
      m.setTargets([t]);
      m.start();
      await vi.advanceTimersByTimeAsync(INTERVAL);
      expect(m.status().targets[0], c.name).toMatchObject({ state: 'down', lastError: c.error, failures: 1 });
      await m.stop();
    }
  });

  it('a listener that throws is counted and health checking carries on', async () => {
    const p = scriptedProbe();
    const errors: string[] = [];
    const m = new HealthManager({
      probe: p.fn,
      onChange: () => {
        throw new Error('listener bug');
      },
      onListenerError: (e, key) => errors.push(`${key}: ${(e as Error).message}`),
    });
    const t = target('10.0.0.1', 80, { rise: 1 });
    m.setTargets([t]);
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL * 3);
    expect(m.status()).toMatchObject({ listenerErrors: 1 });
    expect(errors).toEqual([`${targetKey(t)}: listener bug`]);
    expect(p.callsOf(t)).toBe(3);
    await m.stop();
  });

  it('initialState down: a new backend takes no traffic until rise successes', async () => {
    const p = scriptedProbe();
    const m = new HealthManager({ probe: p.fn, initialState: 'down' });
    const t = target('10.0.0.1', 80);
    m.setTargets([t]);
    expect(m.takesTraffic(t)).toBe(false);
    m.start();
    await vi.advanceTimersByTimeAsync(INTERVAL * 2);
    expect(m.takesTraffic(t)).toBe(true);
    await m.stop();
  });

  it('an unregistered target counts as taking traffic', () => {
    expect(new HealthManager().takesTraffic(target('10.9.9.9', 80))).toBe(true);
  });
});

describe('HealthManager against a real TCP server on 127.0.0.1', () => {
  /** Poll `cond` every 10 ms, at most 500 times; behaviour, not timing, is asserted. */
  async function eventually(cond: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 500; i++) {
      if (cond()) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`not reached: ${what}`);
  }

  async function listen(port: number): Promise<{ server: net.Server; sockets: Set<net.Socket> }> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return { server, sockets };
  }
  async function close(s: { server: net.Server; sockets: Set<net.Socket> }): Promise<void> {
    for (const c of s.sockets) c.destroy();
    await new Promise<void>((r) => s.server.close(() => r()));
  }

  it('a server that goes away is marked down after fall failures and up again after rise', async () => {
    let srv = await listen(0);
    const port = (srv.server.address() as net.AddressInfo).port;
    const changes: [HealthState, HealthState, string | null][] = [];
    const m = new HealthManager({ onChange: (_k, from, to, d) => changes.push([from, to, d.error]) });
    const t: HealthTarget = { address: '127.0.0.1', port, check: resolveCheck({ type: 'tcp', intervalMs: 100, timeoutMs: 90, rise: 2, fall: 2 }) };
    const key = targetKey(t);
    try {
      m.setTargets([t]);
      m.start();
      await eventually(() => m.stateOf(key) === 'up', 'up while the server listens');
      await close(srv);
      await eventually(() => m.stateOf(key) === 'down', 'down after the server closed');
      const down = m.recordOf(key);
      expect(down?.consecutiveFail).toBeGreaterThanOrEqual(2);
      expect(down?.lastError).toMatch(/ECONNREFUSED/);
      srv = await listen(port);
      await eventually(() => m.stateOf(key) === 'up', 'up after the server came back');
      expect(changes.map(([f, to]) => [f, to])).toEqual([
        ['unknown', 'up'],
        ['up', 'down'],
        ['down', 'up'],
      ]);
      expect(changes[1][2]).toMatch(/ECONNREFUSED/);
      expect(m.status().targets[0]).toMatchObject({ transitionsToDown: 1, transitionsToUp: 2, refs: 1 });
    } finally {
      await m.stop();
      await close(srv);
    }
    const probes = m.status().probesStarted;
    await new Promise((r) => setTimeout(r, 250));
    expect(m.status().probesStarted).toBe(probes);
  });
});
