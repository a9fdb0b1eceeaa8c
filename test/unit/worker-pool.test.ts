/**
 * The worker pool of the data-plane process (src/dataplane/worker-pool.ts) with three stand-in
 * worker threads (test/fixtures/fake-packet-worker.mjs: the pool's messages, no capture): a
 * generation answered once all applied, flows joined with their worker, owner-query ids made
 * unique and the answer routed back, counters summed from the workers' shared buffers, a crashed
 * worker restarted on its table with the workers after it leaving and rejoining the fanout
 * group behind it (every worker holding its capture until the group is whole), and a stop that
 * waits for every worker.
 */
import { emptySpec } from '../fixtures/empty-spec.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WorkerPool } from '../../src/dataplane/worker-pool.js';
import { G, workerFigures } from '../../src/dataplane/contract/counters.js';
import type { FromDataplane } from '../../src/dataplane/contract/messages.js';
import type { DataplaneInit } from '../../src/dataplane/contract/spec.js';

const FAKE = new URL('../fixtures/fake-packet-worker.mjs', import.meta.url);

const spec = emptySpec;

const init = (workers: number): DataplaneInit => ({
  engine: 'ring',
  interface: 'sl-none',
  egressInterface: 'sl-none',
  bufferBytes: 4 << 20,
  batchSize: 64,
  flowCapacity: 1024,
  tcpIdleMs: 1000,
  tcpClosingMs: 1000,
  udpIdleMs: 1000,
  tokenCapacity: 1024,
  workers,
  flowTable: { path: '/nonexistent/sluice.flows', attach: false },
  spec: spec(1),
});

async function until<T>(what: string, f: () => T | undefined, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('worker pool with 3 stand-in worker threads', () => {
  let dir = '';
  let pool: WorkerPool | null = null;
  afterEach(async () => {
    if (pool) await new Promise<number>((r) => pool?.stop(r));
    pool = null;
    delete process.env.SLUICE_FAKE_WORKER_LOG;
    delete process.env.SLUICE_FAKE_WORKER_CRASH;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const start = async (crash: boolean): Promise<{ up: FromDataplane[]; notes: string[]; log: () => string[] }> => {
    dir = mkdtempSync(join(tmpdir(), 'sl-pool-'));
    const file = join(dir, 'log');
    writeFileSync(file, '');
    process.env.SLUICE_FAKE_WORKER_LOG = file;
    if (crash) process.env.SLUICE_FAKE_WORKER_CRASH = '1';
    const up: FromDataplane[] = [];
    const notes: string[] = [];
    pool = new WorkerPool(3, { up: (m) => up.push(m), note: (t) => notes.push(t), threadScript: FAKE });
    pool.start(init(3));
    await until('ready', () => up.find((m) => m.type === 'ready'));
    return { up, notes, log: () => readFileSync(file, 'utf8').split('\n').filter(Boolean) };
  };

  it('starts the workers one after the other in one fanout group, each holding its capture; releases them once all have joined; ready once all are', async () => {
    const { up, log } = await start(false);
    expect(log().filter((l) => l.includes(' init '))).toEqual(['0 init attach=false incarnation=1 fanout=true held', '1 init attach=false incarnation=1 fanout=true held', '2 init attach=false incarnation=1 fanout=true held']);
    // Released only after the last one joined: no worker captures while the group is incomplete.
    await until('released', () => (log().filter((l) => l.endsWith(' release')).length === 3 ? true : undefined));
    const l = log();
    const lastInit = l.indexOf('2 init attach=false incarnation=1 fanout=true held');
    expect(l.filter((x) => x.endsWith(' release')).every((x) => l.indexOf(x) > lastInit), l.join('\n')).toBe(true);
    const ready = up.find((m) => m.type === 'ready');
    expect(ready?.type === 'ready' && ready.flowTable.flows).toBe(0 + 1 + 2);
  });

  it('a generation is applied once every worker applied it; flows are joined with their worker', async () => {
    const { up, log } = await start(false);
    pool?.request({ type: 'generation', requestId: 77, spec: spec(2) });
    const applied = await until('applied', () => up.find((m) => m.type === 'applied'));
    expect(applied).toEqual({ type: 'applied', requestId: 77, generation: 2 });
    expect(log().filter((l) => l.includes('generation')).sort()).toEqual(['0 generation 2', '1 generation 2', '2 generation 2']);
    pool?.request({ type: 'flows', requestId: 78, limit: 10 });
    const flows = await until('flows', () => up.find((m) => m.type === 'flows'));
    expect(flows.type === 'flows' && flows.total).toBe(3);
    expect(flows.type === 'flows' && flows.rows.map((r) => [r.client, r.worker])).toEqual([
      ['10.0.0.0', 0],
      ['10.0.0.1', 1],
      ['10.0.0.2', 2],
    ]);
  });

  it("an owner query's id names its worker, and the answer goes back to that worker under its own id", async () => {
    const { up, log } = await start(false);
    const q = await until('owner-query', () => up.find((m) => m.type === 'owner-query'));
    // Worker 2 asked with qid 5: 5 * 3 + 2.
    expect(q.type === 'owner-query' && q.qid).toBe(17);
    pool?.request({ type: 'owner-answer', qid: 17, backendId: 4 });
    await until('answer logged', () => log().find((l) => l.includes('owner-answer')));
    expect(log().filter((l) => l.includes('owner-answer'))).toEqual(['2 owner-answer qid=5 backend=4']);
  });

  it('counters: summed over the workers, the generation the lowest any applied; per-worker figures beside them', async () => {
    await start(false);
    const s = (pool as WorkerPool).snapshot();
    expect(s.counters[G.flowsActive]).toBe(10 + 11 + 12);
    expect(s.counters[G.generation]).toBe(1);
    expect(workerFigures(s.workers ?? new Float64Array(0)).map((w) => w.flows)).toEqual([10, 11, 12]);
  });

  it('a crashed worker is restarted on its own flow table, all holding their capture; the workers after it leave the group before and rejoin behind it; all released after', async () => {
    const { notes, log } = await start(true);
    await until('restart', () => log().find((l) => l.startsWith('1 init') && l.includes('incarnation=2')));
    // The second release of worker 0 and 2: after the group was rebuilt.
    await until('released again', () => (log().filter((l) => l === '0 release' || l === '2 release').length === 4 ? true : undefined));
    const l = log();
    expect(notes.some((n) => n.includes('worker 1 exited') && n.includes('restarting'))).toBe(true);
    const at = (line: string, from = 0): number => l.indexOf(line, from);
    const again = l.findIndex((x) => x.startsWith('1 init') && x.includes('incarnation=2'));
    expect(l[again]).toBe('1 init attach=true incarnation=2 fanout=true held');
    // Every survivor holds before the restarted worker joins; the one after it left before and rejoins behind it.
    const hold0 = at('0 hold');
    const hold2 = at('2 hold');
    const leave = at('2 leave');
    const rejoin = at('2 rejoin');
    expect(hold0 >= 0 && hold0 < again && hold2 >= 0 && hold2 < leave && leave < again && again < rejoin, l.join('\n')).toBe(true);
    // Released only once the group is whole again.
    const lastRelease = (w: number): number => l.lastIndexOf(`${w} release`);
    expect([0, 1, 2].every((w) => lastRelease(w) > rejoin), l.join('\n')).toBe(true);
    // Worker 0, before it in the group, stays a member: it only holds.
    expect(l.filter((x) => x.startsWith('0 ')).every((x) => !x.includes('leave') && !x.includes('rejoin'))).toBe(true);
  });

  it('the restart is counted in the crashed worker\'s figures only', async () => {
    const { log } = await start(true);
    await until('restart', () => log().find((l) => l.startsWith('1 init') && l.includes('incarnation=2')));
    const figures = workerFigures((pool as WorkerPool).snapshot().workers ?? new Float64Array(0));
    expect(figures.map((w) => w.restarts)).toEqual([0, 1, 0]);
  });

  it.each([
    { name: 'worker-crash: the last worker ends and is restarted on the table it left', failpoints: 'worker-crash', wantInit: '2 init attach=true incarnation=2 fanout=true held' },
    { name: 'worker-crash,worker-restart-empty: restarted on a new table', failpoints: 'worker-crash,worker-restart-empty', wantInit: '2 init attach=false incarnation=2 fanout=true held' },
  ])('failpoint $name', async ({ failpoints, wantInit }) => {
    const { log, notes } = await start(false);
    process.env.SLUICE_FAILPOINTS = failpoints;
    try {
      expect((pool as WorkerPool).crashLastWorker()).toBe(true);
      const again = await until('restart', () => log().find((l) => l.startsWith('2 init') && l.includes('incarnation=2')));
      expect(again).toBe(wantInit);
      expect(notes.some((n) => n.includes('worker 2 exited') && n.includes('restarting'))).toBe(true);
      expect(workerFigures((pool as WorkerPool).snapshot().workers ?? new Float64Array(0)).map((w) => w.restarts)).toEqual([0, 0, 1]);
    } finally {
      delete process.env.SLUICE_FAILPOINTS;
    }
  });

  it('stop waits for every worker and reports their flows', async () => {
    const { log } = await start(false);
    const p = pool as WorkerPool;
    pool = null;
    const flows = await new Promise<number>((r) => p.stop(r));
    expect(flows).toBe(10 + 11 + 12);
    expect(log().filter((l) => l.endsWith('stop')).sort()).toEqual(['0 stop', '1 stop', '2 stop']);
  });
});
