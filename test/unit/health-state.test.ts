import { describe, expect, it } from 'vitest';
import { initialRecord, step, takesTraffic, type HealthRecord, type HealthState } from '../../src/health/state.js';
import { healthTarget, resolveCheck, targetKey, type HealthCheckInput } from '../../src/health/types.js';

/** Feed results written as 's' (success) / 'f' (failure); one time unit per probe. */
function run(rise: number, fall: number, results: string, start: HealthState = 'unknown'): { trace: HealthState[]; record: HealthRecord } {
  let r = initialRecord(0, start);
  const trace: HealthState[] = [];
  [...results].forEach((c, i) => {
    r = step(r, c === 's' ? { ok: true, latencyMs: 1 } : { ok: false, error: `failure #${i + 1}`, latencyMs: 1 }, i + 1, { rise, fall });
    trace.push(r.state);
  });
  return { trace, record: r };
}

const U = 'unknown' as const;
const UP = 'up' as const;
const DN = 'down' as const;

describe('health state machine transitions', () => {
  const cases: { name: string; rise: number; fall: number; start?: HealthState; results: string; trace: HealthState[] }[] = [
    { name: 'unknown start: rise=2 successes confirm up', rise: 2, fall: 3, results: 'ss', trace: [U, UP] },
    { name: 'unknown start: fall=3 failures take it down', rise: 2, fall: 3, results: 'fff', trace: [U, U, DN] },
    { name: 'unknown start: 2 failures then a success stay unknown', rise: 2, fall: 3, results: 'ffs', trace: [U, U, U] },
    { name: 'unknown start: one success is not enough for rise=2', rise: 2, fall: 3, results: 's', trace: [U] },
    { name: 'up: fall-1 failures keep it up', rise: 2, fall: 3, start: UP, results: 'ff', trace: [UP, UP] },
    { name: 'up: fall consecutive failures take it down', rise: 2, fall: 3, start: UP, results: 'fff', trace: [UP, UP, DN] },
    { name: 'up: a success resets the failure run', rise: 2, fall: 3, start: UP, results: 'ffsff', trace: [UP, UP, UP, UP, UP] },
    { name: 'down: one success is not enough for rise=2', rise: 2, fall: 3, start: DN, results: 's', trace: [DN] },
    { name: 'recovery: down after 3 failures, up after 2 successes', rise: 2, fall: 3, start: UP, results: 'fffss', trace: [UP, UP, DN, DN, UP] },
    { name: 'recovery interrupted: success, failure, then two successes', rise: 2, fall: 3, start: DN, results: 'sfss', trace: [DN, DN, DN, UP] },
    { name: 'flapping from up never goes down', rise: 2, fall: 3, start: UP, results: 'fsfsfsfsfs', trace: Array<HealthState>(10).fill(UP) },
    { name: 'flapping from down never comes up', rise: 2, fall: 3, start: DN, results: 'sfsfsfsfsf', trace: Array<HealthState>(10).fill(DN) },
    { name: 'flapping from unknown stays unknown', rise: 2, fall: 3, results: 'sfsfsfsf', trace: Array<HealthState>(8).fill(U) },
    { name: 'flapping with rise=2 fall=2 never changes', rise: 2, fall: 2, start: UP, results: 'fsfsfs', trace: Array<HealthState>(6).fill(UP) },
    { name: 'rise=1 fall=1: unknown, one success is up', rise: 1, fall: 1, results: 's', trace: [UP] },
    { name: 'rise=1 fall=1: unknown, one failure is down', rise: 1, fall: 1, results: 'f', trace: [DN] },
    { name: 'rise=1 fall=1: every result decides', rise: 1, fall: 1, start: UP, results: 'fsfs', trace: [DN, UP, DN, UP] },
    { name: 'rise=1 fall=3: one success brings it back', rise: 1, fall: 3, start: UP, results: 'fffs', trace: [UP, UP, DN, UP] },
    { name: 'start down (prove it first): rise successes bring it up', rise: 2, fall: 3, start: DN, results: 'ss', trace: [DN, UP] },
    { name: 'up stays up on successes', rise: 2, fall: 3, start: UP, results: 'sss', trace: [UP, UP, UP] },
    { name: 'down stays down on failures', rise: 2, fall: 3, start: DN, results: 'fff', trace: [DN, DN, DN] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(run(c.rise, c.fall, c.results, c.start).trace).toEqual(c.trace);
    });
  }
});

describe('health state record bookkeeping', () => {
  const cases: {
    name: string;
    rise: number;
    fall: number;
    start?: HealthState;
    results: string;
    want: Partial<HealthRecord>;
  }[] = [
    {
      name: 'counts probes, failures and both kinds of transition',
      rise: 2,
      fall: 3,
      start: UP,
      results: 'fffssfff',
      want: { probes: 8, failures: 6, transitionsToDown: 2, transitionsToUp: 1, state: DN, consecutiveFail: 3, consecutiveOk: 0 },
    },
    {
      name: 'unknown -> up counts as a transition to up',
      rise: 2,
      fall: 3,
      results: 'ss',
      want: { transitionsToUp: 1, transitionsToDown: 0, lastChangeAt: 2 },
    },
    {
      name: 'last change time is the probe that changed the state',
      rise: 2,
      fall: 3,
      start: UP,
      results: 'fffsss',
      want: { lastChangeAt: 5, lastProbeAt: 6, state: UP, consecutiveOk: 3 },
    },
    {
      name: 'no change keeps lastChangeAt null',
      rise: 2,
      fall: 3,
      start: UP,
      results: 'fsfs',
      want: { lastChangeAt: null, transitionsToUp: 0, transitionsToDown: 0 },
    },
    {
      name: 'the last error survives recovery, lastResult says ok',
      rise: 2,
      fall: 3,
      start: UP,
      results: 'fffss',
      want: { lastError: 'failure #3', lastResult: 'ok' },
    },
    {
      name: 'never failed: no last error',
      rise: 2,
      fall: 3,
      results: 'sss',
      want: { lastError: null, lastResult: 'ok', failures: 0 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(run(c.rise, c.fall, c.results, c.start).record).toMatchObject(c.want);
    });
  }

  it('step never mutates the previous record', () => {
    const prev = Object.freeze(initialRecord(0, 'up'));
    const next = step(prev, { ok: false, error: 'x', latencyMs: 1 }, 1, { rise: 1, fall: 1 });
    expect(prev.state).toBe('up');
    expect(next.state).toBe('down');
  });

  it('a failure without error text still records a readable error', () => {
    const r = step(initialRecord(0), { ok: false, latencyMs: 1 }, 1, { rise: 2, fall: 3 });
    expect(r.lastError).toBe('failed');
  });
});

describe('takesTraffic', () => {
  const cases: [HealthState, boolean][] = [
    ['unknown', true],
    ['up', true],
    ['down', false],
  ];
  for (const [state, want] of cases) {
    it(`${state} -> ${want}`, () => expect(takesTraffic(state)).toBe(want));
  }
});

describe('check defaults, validation and target keys', () => {
  it('fills defaults: 2000/1000 ms, rise 2, fall 3', () => {
    expect(resolveCheck({ type: 'tcp' })).toEqual({ type: 'tcp', intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 });
  });

  const bad: { name: string; input: HealthCheckInput; message: RegExp }[] = [
    { name: 'timeout not below interval', input: { type: 'tcp', intervalMs: 1000, timeoutMs: 1000 }, message: /services\[0\]\.healthCheck\.timeoutMs: must be below intervalMs/ },
    { name: 'rise 0', input: { type: 'tcp', rise: 0 }, message: /\.rise: must be an integer >= 1/ },
    { name: 'fractional fall', input: { type: 'tcp', fall: 1.5 }, message: /\.fall: must be an integer >= 1/ },
    { name: 'port out of range', input: { type: 'http', port: 70000 }, message: /\.port: must be an integer 1\.\.65535/ },
    { name: 'relative http path', input: { type: 'http', path: 'health' }, message: /\.path: must start with '\/'/ },
    { name: 'status code out of range', input: { type: 'http', expectStatus: [200, 700] }, message: /\.expectStatus: status codes are integers 100\.\.599/ },
    { name: 'unknown type', input: { type: 'sctp' as 'tcp' }, message: /\.type: must be one of tcp, http, udp, icmp/ },
  ];
  for (const c of bad) {
    it(`rejects ${c.name}`, () => expect(() => resolveCheck(c.input, 'services[0].healthCheck')).toThrow(c.message));
  }

  it('uses the service port unless the check names one; icmp has none', () => {
    expect(healthTarget('10.0.0.1', 443, resolveCheck({ type: 'tcp' })).port).toBe(443);
    expect(healthTarget('10.0.0.1', 443, resolveCheck({ type: 'http', port: 8080 })).port).toBe(8080);
    expect(healthTarget('10.0.0.1', 443, resolveCheck({ type: 'icmp' })).port).toBe(0);
  });

  it('an all-ports service needs an explicit check port', () => {
    expect(() => healthTarget('10.0.0.1', 0, resolveCheck({ type: 'tcp' }))).toThrow(/set healthCheck\.port/);
  });

  const key = (address: string, port: number, c: HealthCheckInput): string => targetKey(healthTarget(address, port, resolveCheck(c)));
  const same: { name: string; a: [string, number, HealthCheckInput]; b: [string, number, HealthCheckInput] }[] = [
    { name: 'same tcp check from two services', a: ['10.0.0.1', 80, { type: 'tcp' }], b: ['10.0.0.1', 80, { type: 'tcp' }] },
    { name: 'http default path equals explicit /', a: ['10.0.0.1', 80, { type: 'http' }], b: ['10.0.0.1', 80, { type: 'http', path: '/' }] },
    { name: 'http status list order and single value', a: ['10.0.0.1', 80, { type: 'http', expectStatus: [204, 200] }], b: ['10.0.0.1', 80, { type: 'http', expectStatus: [200, 204, 200] }] },
    { name: 'udp expect unset and empty (both accept any reply)', a: ['10.0.0.1', 53, { type: 'udp' }], b: ['10.0.0.1', 53, { type: 'udp', expect: '' }] },
    { name: 'icmp of one backend from services on different ports', a: ['10.0.0.1', 80, { type: 'icmp' }], b: ['10.0.0.1', 443, { type: 'icmp' }] },
  ];
  for (const c of same) it(`same key: ${c.name}`, () => expect(key(...c.a)).toBe(key(...c.b)));

  const differ: { name: string; a: [string, number, HealthCheckInput]; b: [string, number, HealthCheckInput] }[] = [
    { name: 'different backend', a: ['10.0.0.1', 80, { type: 'tcp' }], b: ['10.0.0.2', 80, { type: 'tcp' }] },
    { name: 'different port', a: ['10.0.0.1', 80, { type: 'tcp' }], b: ['10.0.0.1', 81, { type: 'tcp' }] },
    { name: 'tcp vs http', a: ['10.0.0.1', 80, { type: 'tcp' }], b: ['10.0.0.1', 80, { type: 'http' }] },
    { name: 'http path', a: ['10.0.0.1', 80, { type: 'http', path: '/a' }], b: ['10.0.0.1', 80, { type: 'http', path: '/b' }] },
    { name: 'http host header', a: ['10.0.0.1', 80, { type: 'http', host: 'a' }], b: ['10.0.0.1', 80, { type: 'http' }] },
    { name: 'http default statuses vs 200 only', a: ['10.0.0.1', 80, { type: 'http' }], b: ['10.0.0.1', 80, { type: 'http', expectStatus: 200 }] },
    { name: 'udp payload', a: ['10.0.0.1', 53, { type: 'udp', send: 'a' }], b: ['10.0.0.1', 53, { type: 'udp', send: 'b' }] },
    { name: 'udp text that looks like a separator', a: ['10.0.0.1', 53, { type: 'udp', send: 'a|expect=b' }], b: ['10.0.0.1', 53, { type: 'udp', send: 'a', expect: 'b' }] },
    { name: 'interval', a: ['10.0.0.1', 80, { type: 'tcp' }], b: ['10.0.0.1', 80, { type: 'tcp', intervalMs: 5000 }] },
    { name: 'fall', a: ['10.0.0.1', 80, { type: 'tcp' }], b: ['10.0.0.1', 80, { type: 'tcp', fall: 5 }] },
  ];
  for (const c of differ) it(`different key: ${c.name}`, () => expect(key(...c.a)).not.toBe(key(...c.b)));
});
