/**
 * The control process's one request/response helper for the data-plane pipe
 * (src/dataplane/contract/request.ts): every way a request ends — answer, timeout, send refused,
 * process gone — settles it once and leaves no timer behind. Fake timers; no processes.
 */
import { emptySpec } from '../fixtures/empty-spec.js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { REQUEST_TIMEOUT_MS, type DataplaneReply, type ToDataplane } from '../../src/dataplane/contract/messages.js';
import { DataplaneGone, RequestTimeout, RequestTracker } from '../../src/dataplane/contract/request.js';
import type { DataplaneSpec } from '../../src/dataplane/contract/spec.js';

const SPEC: DataplaneSpec = emptySpec(2);

/** A pipe that records what was sent; `up` false makes send refuse. */
function pipe(up = true): { sent: ToDataplane[]; send: (m: ToDataplane) => boolean } {
  const sent: ToDataplane[] = [];
  return { sent, send: (m) => (up ? (sent.push(m), true) : false) };
}

function idOf(m: ToDataplane | undefined): number {
  if (!m || !('requestId' in m)) throw new Error(`not a request: ${JSON.stringify(m)}`);
  return m.requestId;
}

describe('RequestTracker', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const answers: { name: string; ask: (t: RequestTracker, send: (m: ToDataplane) => boolean) => Promise<unknown>; reply: (id: number) => DataplaneReply; expected: unknown }[] = [
    {
      name: 'generation -> applied',
      ask: (t, send) => t.request({ type: 'generation', spec: SPEC }, send),
      reply: (id) => ({ type: 'applied', requestId: id, generation: 2 }),
      expected: { type: 'applied', generation: 2 },
    },
    {
      name: 'generation -> apply-failed (an answer too: the caller decides)',
      ask: (t, send) => t.request({ type: 'generation', spec: SPEC }, send),
      reply: (id) => ({ type: 'apply-failed', requestId: id, generation: 2, message: 'bad filter' }),
      expected: { type: 'apply-failed', message: 'bad filter' },
    },
    {
      name: 'flows -> flows',
      ask: (t, send) => t.request({ type: 'flows', limit: 10 }, send),
      reply: (id) => ({ type: 'flows', requestId: id, rows: [], total: 7 }),
      expected: { type: 'flows', total: 7 },
    },
    {
      name: 'flow-counts -> flow-counts',
      ask: (t, send) => t.request({ type: 'flow-counts' }, send),
      reply: (id) => ({ type: 'flow-counts', requestId: id, counts: new Map([[3, 4]]) }),
      expected: { type: 'flow-counts', counts: new Map([[3, 4]]) },
    },
  ];

  it.each(answers)('$name: resolves with the answer, clears its timer', async ({ ask, reply, expected }) => {
    const t = new RequestTracker();
    const p = pipe();
    const pending = ask(t, p.send);
    expect(vi.getTimerCount()).toBe(1);
    expect(t.settle(reply(idOf(p.sent[0])))).toBe(true);
    await expect(pending).resolves.toMatchObject(expected as object);
    expect(vi.getTimerCount()).toBe(0);
    expect(t.outstanding).toBe(0);
  });

  it.each([
    { type: 'generation' as const, body: { type: 'generation' as const, spec: SPEC } },
    { type: 'flows' as const, body: { type: 'flows' as const, limit: 1 } },
    { type: 'flow-counts' as const, body: { type: 'flow-counts' as const } },
  ])('$type: no answer -> RequestTimeout after REQUEST_TIMEOUT_MS, and a late answer is ignored', async ({ type, body }) => {
    const t = new RequestTracker();
    const p = pipe();
    const pending = t.request(body, p.send);
    const caught = pending.catch((e: unknown) => e);
    vi.advanceTimersByTime(REQUEST_TIMEOUT_MS[type] - 1);
    expect(t.outstanding).toBe(1);
    vi.advanceTimersByTime(1);
    const e = await caught;
    expect(e).toBeInstanceOf(RequestTimeout);
    expect((e as Error).message).toBe(`the data plane did not answer a ${type} request within ${REQUEST_TIMEOUT_MS[type]} ms`);
    expect(vi.getTimerCount()).toBe(0);
    const late: DataplaneReply = { type: 'flow-counts', requestId: idOf(p.sent[0]), counts: new Map() };
    expect(t.settle(late)).toBe(false);
  });

  it('send refused (no process): DataplaneGone at once, no timer left', async () => {
    const t = new RequestTracker();
    await expect(t.request({ type: 'flow-counts' }, pipe(false).send)).rejects.toThrow(DataplaneGone);
    expect(vi.getTimerCount()).toBe(0);
    expect(t.outstanding).toBe(0);
  });

  it('process gone: failAll rejects every outstanding request now, clears every timer', async () => {
    const t = new RequestTracker();
    const p = pipe();
    const all = [t.request({ type: 'flows', limit: 1 }, p.send), t.request({ type: 'generation', spec: SPEC }, p.send), t.request({ type: 'flow-counts' }, p.send)];
    const outcomes = Promise.allSettled(all);
    expect(vi.getTimerCount()).toBe(3);
    t.failAll('the data-plane process exited');
    const results = await outcomes;
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'resolved'))).toEqual(Array(3).fill('the data-plane process exited'));
    expect(vi.getTimerCount()).toBe(0);
  });

  it('an answer of the wrong kind for an id does not settle that request', async () => {
    const t = new RequestTracker();
    const p = pipe();
    const pending = t.request({ type: 'flows', limit: 1 }, p.send);
    expect(t.settle({ type: 'applied', requestId: idOf(p.sent[0]), generation: 9 })).toBe(false);
    expect(t.outstanding).toBe(1);
    expect(t.settle({ type: 'flows', requestId: idOf(p.sent[0]), rows: [], total: 0 })).toBe(true);
    await expect(pending).resolves.toMatchObject({ total: 0 });
  });

  it('each request carries its own id; answers in any order reach the right caller', async () => {
    const t = new RequestTracker();
    const p = pipe();
    const a = t.request({ type: 'flows', limit: 1 }, p.send);
    const b = t.request({ type: 'flows', limit: 2 }, p.send);
    const [ida, idb] = p.sent.map(idOf);
    expect(ida).not.toBe(idb);
    t.settle({ type: 'flows', requestId: idb, rows: [], total: 2 });
    t.settle({ type: 'flows', requestId: ida, rows: [], total: 1 });
    await expect(a).resolves.toMatchObject({ total: 1 });
    await expect(b).resolves.toMatchObject({ total: 2 });
  });

  it('timers left after 100 answered applies: 0 with the helper; the old apply waiter (timer never cleared) leaves 100', async () => {
    const t = new RequestTracker();
    const p = pipe();
    for (let i = 0; i < 100; i++) {
      const pending = t.request({ type: 'generation', spec: SPEC }, p.send);
      t.settle({ type: 'applied', requestId: idOf(p.sent[i]), generation: 2 });
      await pending;
    }
    const withHelper = vi.getTimerCount();
    // The correlator this helper replaced (daemon.ts before the split): resolve on answer, but
    // the timeout's setTimeout was never cleared.
    for (let i = 0; i < 100; i++) {
      const applied = new Promise<void>((resolve, reject) => {
        setTimeout(() => reject(new Error('timeout')), REQUEST_TIMEOUT_MS.generation);
        resolve();
      });
      await applied;
    }
    const withOldWaiter = vi.getTimerCount() - withHelper;
    console.log(`timers left after 100 applies: helper ${withHelper}, old waiter ${withOldWaiter}`);
    expect(withHelper).toBe(0);
    expect(withOldWaiter).toBe(100);
    vi.clearAllTimers();
  });
});
