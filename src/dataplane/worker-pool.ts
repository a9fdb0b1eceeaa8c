/**
 * The data-plane process's packet workers, seen from its main thread as one data plane: the
 * control process's messages fan out to every worker and their answers come back as one
 * (contract/messages.ts keeps its shape whatever dataplane.workers is).
 *
 *   generation      every worker applies it; `applied` once all have (a failure: apply-failed)
 *   flows           every worker scans its own table; rows joined up to the limit, totals added
 *   flow-counts     counts per backend added
 *   explain         the worker tracking the flow answers for it; otherwise worker 0 (the tables
 *                   a worker without the flow would use, Maglev, tokens and affinity, are the same)
 *   owner-query     qid made unique across workers (qid * count + index), the answer routed back
 *   counters        each worker's counters live in a SharedArrayBuffer: summed here at publish
 *                   time, no copy through a message; per-worker figures ride along
 *
 * One worker (the default) runs in this thread, exactly as before workers existed; more run in
 * worker threads (worker-thread.ts), one PACKET_FANOUT_HASH group on the interface. A worker
 * thread that dies is started again on its own flow table (the shared file keeps its flows);
 * the workers after it rejoin the group behind it so the kernel's member order, and with it
 * which worker each flow hashes to, is the order it had. Whenever the group is incomplete (the
 * start, a restart) every worker holds its capture: no worker is handed another's flows.
 */
import { closeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { hostAddon } from '../observe/host-addon.js';
import { failpointOn } from './failpoints.js';
import { COUNTER_LENGTH, DROPS_BASE, G, WORKER_FIGURE, WORKER_FIGURES, usedLength } from './contract/counters.js';
import { DROP_REASON_COUNT } from '../packet/drop-reasons.js';
import type { DataplaneInit, DataplaneSpec } from './contract/spec.js';
import type { ExplainDecision, FlowRow, FromDataplane, ToDataplane } from './contract/messages.js';
import { MAX_WORKERS, type FlowTableOrigin } from './contract/handover.js';
import { PacketWorker, type FromWorker, type ToWorker, type WorkerInit } from './packet-worker.js';
import { MptcpTokenTable } from './mptcp-tokens.js';
import { AffinityTable } from './affinity-table.js';
import { DEFAULT_AFFINITY_CAPACITY } from './contract/limits.js';


/** How long a request waits for every worker's answer before it answers with what it has. */
const GATHER_MS = 4000;
/** Restarts of one worker within RESTART_WINDOW_MS before the pool stops trying (a crash loop). */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

/** The two ways to reach a worker: a call in this thread, or a worker thread's port. */
interface WorkerLink {
  post(msg: ToWorker): void;
  terminate(): void;
}

interface Gather {
  expect: number;
  answers: (FromWorker | null)[];
  got: number;
  timer: NodeJS.Timeout;
  done: (answers: (FromWorker | null)[]) => void;
}

export interface PoolEvents {
  /** A message for the control process. */
  up: (msg: FromDataplane) => void;
  /** Something the log of the data-plane process should say (a worker died, was restarted). */
  note: (text: string) => void;
  /** The script each worker thread runs; default worker-thread.js beside this file (tests give a stand-in). */
  threadScript?: URL;
}

export class WorkerPool {
  readonly count: number;
  readonly #events: PoolEvents;
  readonly #links: (WorkerLink | null)[];
  readonly #counters: Float64Array[];
  readonly #countersBuffers: (SharedArrayBuffer | ArrayBuffer)[];
  readonly #sum: Float64Array = new Float64Array(COUNTER_LENGTH);
  readonly #figures: Float64Array;
  #sharedTokens: SharedArrayBuffer | undefined;
  #sharedAffinity: SharedArrayBuffer | undefined;
  #init: DataplaneInit | null = null;
  #spec: DataplaneSpec | null = null;
  #fanoutGroup = 0;
  #gathers = new Map<number, Gather>();
  #nextGather = 1;
  #engine: string | null = null;
  #stopping = false;
  #restarts: number[][];
  /** Per worker: restarts since the pool started (WORKER_FIGURE.restarts). */
  readonly #restartCount: number[];
  /** Per worker: what its `stopped` answer settles. */
  readonly #stopWaits = new Map<number, () => void>();
  /** Per worker: what its `rejoined` answer settles. */
  readonly #rejoinWaits = new Map<number, () => void>();
  /** Worker restarts under way: the workers stay held until none is. */
  #rebuilding = 0;
  /**
   * Per worker: the pool's own fd on the worker's capture socket (-1: none). A thread that dies
   * closes its fds, and its socket would leave the fanout group at once: the kernel moves the
   * last member into its place and re-hashes, so until every worker holds, the survivors are
   * handed the dead worker's flows and create them anew from the table pick (measured: 20 flows
   * created and 8 of 100 connections broken after a crash behind a reload). Held here, the
   * socket keeps its place (its frames wait in its ring, lost when it closes) until the
   * replacement has joined behind it (#orphans).
   */
  readonly #socketHolds: number[];
  /** Per worker: the held socket of a worker that died, closed once its replacement has joined. */
  readonly #orphans: number[];
  /** Every worker has joined the group once (the start sequence is over). */
  #started = false;

  constructor(count: number, events: PoolEvents) {
    if (!Number.isInteger(count) || count < 1 || count > MAX_WORKERS) throw new RangeError(`workers must be 1..${MAX_WORKERS}, got ${count}`);
    this.count = count;
    this.#events = events;
    this.#links = new Array<WorkerLink | null>(count).fill(null);
    this.#countersBuffers = [];
    this.#counters = [];
    for (let i = 0; i < count; i++) {
      const b = count > 1 ? new SharedArrayBuffer(COUNTER_LENGTH * 8) : new ArrayBuffer(COUNTER_LENGTH * 8);
      this.#countersBuffers.push(b);
      this.#counters.push(new Float64Array(b));
    }
    this.#figures = new Float64Array(count * WORKER_FIGURES);
    this.#restarts = Array.from({ length: count }, () => []);
    this.#restartCount = new Array<number>(count).fill(0);
    this.#socketHolds = new Array<number>(count).fill(-1);
    this.#orphans = new Array<number>(count).fill(-1);
  }

  get engine(): string | null {
    return this.#engine;
  }

  get spec(): DataplaneSpec | null {
    return this.#spec;
  }

  /** Live flows of all workers (the workers' own gauges). */
  get flows(): number {
    let n = 0;
    for (const c of this.#counters) n += c[G.flowsActive];
    return n;
  }

  /** Start every worker, one after the other (the order they join the fanout group), then answer ready or fatal. */
  start(init: DataplaneInit): void {
    if (this.#init) throw new Error('this data plane is already running: adopt it instead');
    this.#init = init;
    this.#spec = init.spec;
    if (this.count > 1) {
      // Any id works as long as the workers of this process share it and no other socket group
      // on the host uses it: the process id is unique while this process lives.
      this.#fanoutGroup = (process.pid & 0xffff) || 1;
      // SLUICE_SHARED_TABLES=off: each worker its own tables, to show what sharing them buys (e2e).
      if (process.env.SLUICE_SHARED_TABLES !== 'off') {
        this.#sharedTokens = MptcpTokenTable.sharedBuffer(init.tokenCapacity);
        this.#sharedAffinity = AffinityTable.sharedBuffer(DEFAULT_AFFINITY_CAPACITY);
      }
    }
    const origin: FlowTableOrigin = { attached: false, flows: 0, tokens: 0, note: '' };
    const next = (i: number): void => {
      if (i === this.count) {
        // The group is whole, in worker order: now each flow hashes to the worker whose table has it.
        this.#started = true;
        if (this.count > 1 && this.#rebuilding === 0) for (const l of this.#links) l?.post({ type: 'release' });
        this.#events.up({ type: 'ready', engine: this.#engine ?? init.engine, flowTable: origin });
        return;
      }
      this.#startWorker(i, (m) => {
        if (m.type === 'fatal') {
          this.#stopAll();
          this.#events.up({ type: 'fatal', message: this.count > 1 ? `worker ${i}: ${m.message}` : m.message });
          return;
        }
        if (m.type !== 'ready') return;
        this.#engine = m.engine;
        origin.attached ||= m.flowTable.attached;
        origin.flows += m.flowTable.flows;
        origin.tokens += m.flowTable.tokens;
        origin.note = origin.note && origin.note !== m.flowTable.note ? `${origin.note}; worker ${i}: ${m.flowTable.note}` : m.flowTable.note;
        next(i + 1);
      });
    };
    next(0);
  }

  #workerInit(index: number, attach: boolean, held: boolean, fresh: boolean): WorkerInit {
    const init = this.#init as DataplaneInit;
    // A restarted worker takes the table file it left, with the generation in force now.
    const i: DataplaneInit = { ...init, spec: this.#spec ?? init.spec, flowTable: init.flowTable ? { path: init.flowTable.path, attach: !fresh && (init.flowTable.attach || attach) } : undefined };
    return {
      init: i,
      index,
      count: this.count,
      fanoutGroup: this.#fanoutGroup,
      counters: this.#countersBuffers[index],
      sharedTokens: this.#sharedTokens,
      sharedAffinity: this.#sharedAffinity,
      held,
    };
  }

  /**
   * Start worker `index`; `started` sees its ready or fatal. With more than one worker it joins
   * the fanout group held (WorkerInit.held), released once the whole group has joined (at the
   * pool's start, or after a restart).
   */
  #startWorker(index: number, started: (m: FromWorker) => void, attach = false, fresh = false): void {
    let starting = true;
    const onMessage = (m: FromWorker): void => {
      if (starting && (m.type === 'ready' || m.type === 'fatal')) {
        starting = false;
        started(m);
        return;
      }
      this.#fromWorker(index, m);
    };
    const w = this.#workerInit(index, attach, this.count > 1, fresh);
    if (this.count === 1) {
      const local = new PacketWorker(onMessage);
      this.#links[index] = { post: (m) => local.handle(m), terminate: () => local.stop() };
      local.handle({ type: 'init', worker: w });
      return;
    }
    const thread = new Worker(this.#events.threadScript ?? new URL('./worker-thread.js', import.meta.url), { name: `sluice-worker-${index}` });
    const link: WorkerLink = { post: (m) => thread.postMessage(m), terminate: () => void thread.terminate() };
    this.#links[index] = link;
    thread.on('message', onMessage);
    thread.on('error', (e) => this.#events.note(`worker ${index} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`));
    thread.on('exit', (code) => {
      if (this.#links[index] !== link) return;
      this.#links[index] = null;
      this.#closeHeld(this.#orphans, index);
      this.#orphans[index] = this.#socketHolds[index];
      this.#socketHolds[index] = -1;
      if (starting || this.#stopping) this.#closeHeld(this.#orphans, index);
      if (starting) {
        starting = false;
        started({ type: 'fatal', message: `worker ${index} exited (code ${code}) while starting` });
        return;
      }
      if (!this.#stopping) this.#restart(index, code);
    });
    link.post({ type: 'init', worker: w });
  }

  /**
   * A worker thread died: start it again on its own flow table. The kernel filled its place in
   * the fanout group with the last member; the workers after it leave and rejoin one after the
   * other behind it, so each flow hashes to the worker it hashed to before. Meanwhile every
   * worker holds its capture (WorkerInit.held): in the incomplete group a worker would be handed
   * flows of another and create them anew from the table pick. Released once all are back.
   */
  #restart(index: number, code: number): void {
    const now = Date.now();
    const recent = this.#restarts[index].filter((t) => now - t < RESTART_WINDOW_MS);
    this.#restarts[index] = recent;
    if (recent.length >= MAX_RESTARTS) {
      this.#events.note(`worker ${index} exited (code ${code}) ${recent.length} times within ${RESTART_WINDOW_MS / 1000} s: not restarted`);
      // Its socket leaves the group: the others share its flows from now on.
      this.#closeHeld(this.#orphans, index);
      // Forward with the workers left rather than hold them for good.
      if (this.#rebuilding === 0 && this.#started) for (const l of this.#links) l?.post({ type: 'release' });
      return;
    }
    recent.push(now);
    this.#restartCount[index]++;
    this.#events.note(`worker ${index} exited (code ${code}): restarting it`);
    // A worker that died inside a write leaves the shared tables' lock held and one slot half
    // written: free the lock and empty the slot before anyone waits on it.
    if (this.#sharedTokens) MptcpTokenTable.releaseLockOf(this.#sharedTokens, index + 1);
    if (this.#sharedAffinity) AffinityTable.releaseLockOf(this.#sharedAffinity, index + 1);
    this.#rebuilding++;
    for (const l of this.#links) l?.post({ type: 'hold' });
    const after: number[] = [];
    for (let j = index + 1; j < this.count; j++) if (this.#links[j]) after.push(j);
    for (const j of after) {
      this.#closeHeld(this.#socketHolds, j);
      this.#links[j]?.post({ type: 'leave' });
    }
    const rejoin = (k: number): void => {
      if (k === after.length) {
        if (--this.#rebuilding === 0 && this.#started && !this.#stopping) for (const l of this.#links) l?.post({ type: 'release' });
        return;
      }
      const j = after[k];
      if (!this.#links[j]) {
        rejoin(k + 1);
        return;
      }
      // The next one joins only once this one is in: the kernel's member order is the join order.
      this.#askOne(j, this.#rejoinWaits, { type: 'rejoin' }, () => rejoin(k + 1));
    };
    this.#startWorker(
      index,
      (m) => {
        if (m.type === 'fatal') this.#events.note(`worker ${index} could not restart: ${m.message}`);
        // The replacement has joined behind the dead worker's socket: closing that one moves the
        // replacement (the last member) into its place.
        this.#closeHeld(this.#orphans, index);
        rejoin(0);
      },
      true,
      failpointOn('worker-restart-empty'),
    );
  }

  /**
   * The worker-crash failpoint (failpoints.ts): end the last worker thread abruptly, as an
   * uncaught error in it would; its exit runs #restart. False with one worker (it runs in this
   * thread) or while that worker is not running.
   */
  crashLastWorker(): boolean {
    const index = this.count - 1;
    const link = this.#links[index];
    if (this.count === 1 || !link || this.#stopping) return false;
    link.terminate();
    return true;
  }

  /** Route a control-process message (not hello/init/shutdown/handover: worker.ts handles those). */
  request(msg: ToDataplane): void {
    switch (msg.type) {
      case 'generation':
        this.#spec = msg.spec;
        this.#gather(msg, (answers) => {
          const failed = answers.find((a) => a?.type === 'apply-failed');
          if (failed?.type === 'apply-failed') this.#events.up({ ...failed, requestId: msg.requestId });
          else if (answers.some((a) => a === null)) this.#events.up({ type: 'apply-failed', requestId: msg.requestId, generation: msg.spec.generation, message: 'a worker did not answer' });
          else this.#events.up({ type: 'applied', requestId: msg.requestId, generation: msg.spec.generation });
        });
        break;
      case 'flows':
        this.#gather(msg, (answers) => {
          const rows: FlowRow[] = [];
          let total = 0;
          answers.forEach((a, worker) => {
            if (a?.type !== 'flows') return;
            total += a.total;
            for (const r of a.rows) if (rows.length < msg.limit) rows.push({ ...r, worker });
          });
          this.#events.up({ type: 'flows', requestId: msg.requestId, rows, total });
        });
        break;
      case 'flow-counts':
        this.#gather(msg, (answers) => {
          const counts = new Map<number, number>();
          const closing = new Map<number, number>();
          for (const a of answers) {
            if (a?.type !== 'flow-counts') continue;
            for (const [b, n] of a.counts) counts.set(b, (counts.get(b) ?? 0) + n);
            for (const [b, n] of a.closing ?? []) closing.set(b, (closing.get(b) ?? 0) + n);
          }
          this.#events.up({ type: 'flow-counts', requestId: msg.requestId, counts, closing });
        });
        break;
      case 'explain':
        this.#gather(msg, (answers) => this.#events.up(mergeExplain(msg.requestId, answers)));
        break;
      case 'publish':
        this.#gather(msg, () => this.#events.up(this.snapshot()));
        break;
      case 'owner-answer': {
        const index = msg.qid % this.count;
        this.#links[index]?.post({ type: 'owner-answer', qid: (msg.qid - index) / this.count, backendId: msg.backendId });
        break;
      }
      case 'owner-queries':
      case 'owner-recent':
      case 'publish-owners':
        for (const l of this.#links) l?.post(msg);
        break;
      default:
        break;
    }
  }

  /**
   * Send `msg` to every live worker and call `done` with their answers (null: none in time).
   * The workers answer under the pool's own id (requests of two control processes, or a
   * request and a publish, may carry one requestId); `done` answers under the original.
   */
  #gather(msg: Extract<ToDataplane, { requestId: number }> | { type: 'publish' }, done: (answers: (FromWorker | null)[]) => void): void {
    const id = this.#nextGather++;
    const g: Gather = {
      expect: 0,
      answers: new Array<FromWorker | null>(this.count).fill(null),
      got: 0,
      timer: setTimeout(() => this.#finish(id), GATHER_MS),
      done,
    };
    this.#gathers.set(id, g);
    const out: ToWorker = msg.type === 'publish' ? { type: 'publish', gather: id } : { ...msg, requestId: id };
    for (const l of this.#links) {
      if (!l) continue;
      g.expect++;
      l.post(out);
    }
    if (g.expect === 0) this.#finish(id);
  }

  #finish(id: number): void {
    const g = this.#gathers.get(id);
    if (!g) return;
    this.#gathers.delete(id);
    clearTimeout(g.timer);
    g.done(g.answers);
  }

  #fromWorker(index: number, m: FromWorker): void {
    switch (m.type) {
      case 'applied':
      case 'apply-failed':
      case 'flows':
      case 'flow-counts':
      case 'explain':
      case 'explain-failed':
      case 'published': {
        const id = m.type === 'published' ? m.gather : m.requestId;
        const g = this.#gathers.get(id);
        if (!g || g.answers[index] !== null) return;
        g.answers[index] = m;
        g.got++;
        if (g.got >= g.expect) this.#finish(id);
        break;
      }
      case 'owner-query':
        this.#events.up({ ...m, qid: m.qid * this.count + index });
        break;
      case 'owner-entries':
        this.#events.up(m);
        break;
      case 'stopped':
        this.#stopWaits.get(index)?.();
        break;
      case 'rejoined':
        this.#rejoinWaits.get(index)?.();
        break;
      case 'capture-socket':
        this.#hold(index, m.fd);
        break;
      case 'ready':
      case 'fatal':
        break;
    }
  }

  /** The workers' counters summed, as one data plane's, and each worker's own figures. */
  snapshot(): Extract<FromDataplane, { type: 'counters' }> {
    const spec = this.#spec;
    let maxBackend = 0;
    if (spec) for (const b of spec.backends) if (b.id > maxBackend) maxBackend = b.id;
    const len = usedLength(maxBackend);
    const sum = this.#sum;
    sum.fill(0, 0, len);
    const n = this.count;
    let generation = Infinity;
    let tokens = 0;
    let affinity = 0;
    for (let w = 0; w < n; w++) {
      const c = this.#counters[w];
      for (let i = 0; i < len; i++) sum[i] += c[i];
      // Gauges of one table all workers share, and the generation every worker has applied.
      if (c[G.generation] < generation) generation = c[G.generation];
      if (c[G.mptcpTokensActive] > tokens) tokens = c[G.mptcpTokensActive];
      if (c[G.affinityEntries] > affinity) affinity = c[G.affinityEntries];
      let drops = 0;
      for (let r = 1; r < DROP_REASON_COUNT; r++) drops += c[DROPS_BASE + r];
      const f = w * WORKER_FIGURES;
      this.#figures[f + WORKER_FIGURE.rxFrames] = c[G.rxFrames];
      this.#figures[f + WORKER_FIGURE.txFrames] = c[G.txFrames];
      this.#figures[f + WORKER_FIGURE.drops] = drops;
      this.#figures[f + WORKER_FIGURE.flows] = c[G.flowsActive];
      this.#figures[f + WORKER_FIGURE.captureDropped] = c[G.captureDropped];
      this.#figures[f + WORKER_FIGURE.cpuUserUs] = c[G.workerCpuUserUs];
      this.#figures[f + WORKER_FIGURE.cpuSystemUs] = c[G.workerCpuSystemUs];
      this.#figures[f + WORKER_FIGURE.restarts] = this.#restartCount[w];
    }
    sum[G.generation] = generation === Infinity ? 0 : generation;
    sum[G.mptcpTokensActive] = tokens;
    sum[G.affinityEntries] = affinity;
    const cpu = process.cpuUsage();
    sum[G.dataplaneRssBytes] = process.memoryUsage.rss();
    sum[G.dataplaneCpuUserUs] = cpu.user;
    sum[G.dataplaneCpuSystemUs] = cpu.system;
    return { type: 'counters', counters: sum.slice(0, len), workers: this.#figures.slice() };
  }

  /** Keep our own fd on worker `index`'s capture socket (threads only: one worker has no group). */
  #hold(index: number, fd: number): void {
    this.#closeHeld(this.#socketHolds, index);
    if (this.count < 2 || fd < 0 || this.#stopping) return;
    try {
      const held = hostAddon().holdPacketSocket(fd);
      if (held >= 0) this.#socketHolds[index] = held;
      else this.#events.note(`worker ${index}: cannot hold its capture socket (fd ${fd}): errno ${-held}`);
    } catch (e) {
      this.#events.note(`worker ${index}: cannot hold its capture socket: ${(e as Error).message}`);
    }
  }

  #closeHeld(fds: number[], index: number): void {
    const fd = fds[index];
    fds[index] = -1;
    if (fd < 0) return;
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }

  #closeAllHeld(): void {
    for (let i = 0; i < this.count; i++) {
      this.#closeHeld(this.#socketHolds, i);
      this.#closeHeld(this.#orphans, i);
    }
  }

  /** Stop every worker (shutdown or handover): no write to any flow table after `done`. */
  stop(done: (flows: number) => void): void {
    this.#stopping = true;
    const flows = this.flows;
    let left = 0;
    const finished = (): void => {
      if (--left > 0) return;
      for (const l of this.#links) l?.terminate();
      this.#closeAllHeld();
      done(flows);
    };
    for (let i = 0; i < this.count; i++) {
      if (!this.#links[i]) continue;
      left++;
      this.#askOne(i, this.#stopWaits, { type: 'stop' }, finished);
    }
    if (left === 0) {
      this.#closeAllHeld();
      done(flows);
    }
  }

  /**
   * Post `msg` to worker `index` and call `then` once: when its answer settles the entry in
   * `waits` (#fromWorker), or after GATHER_MS without one (a worker that died does not answer).
   */
  #askOne(index: number, waits: Map<number, () => void>, msg: ToWorker, then: () => void): void {
    let answered = false;
    const once = (): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      waits.delete(index);
      then();
    };
    const timer = setTimeout(once, GATHER_MS);
    waits.set(index, once);
    this.#links[index]?.post(msg);
  }

  #stopAll(): void {
    this.#stopping = true;
    for (const l of this.#links) l?.terminate();
    this.#closeAllHeld();
  }
}

/** One explain answer from the workers': the one tracking the flow, else the first worker's. */
function mergeExplain(requestId: number, answers: (FromWorker | null)[]): FromDataplane {
  const ok = answers.filter((a): a is Extract<FromWorker, { type: 'explain' }> => a?.type === 'explain');
  if (ok.length === 0) {
    const failed = answers.find((a) => a?.type === 'explain-failed');
    return { type: 'explain-failed', requestId, message: failed?.type === 'explain-failed' ? failed.message : 'no worker answered' };
  }
  const base = ok[0].decisions;
  // Without a port: every worker's tracked flows of the client (each flow lives on one worker).
  const tracked = ok.flatMap((a) => a.decisions.filter((d) => d.portSource === 'tracked'));
  if (tracked.length > 0 && base.every((d) => d.portSource !== 'given')) return { type: 'explain', requestId, decisions: tracked };
  const decisions: ExplainDecision[] = base.map((d, i) => {
    for (const a of ok) {
      const other = a.decisions[i];
      if (other && other.tracked !== null) return other;
    }
    return d;
  });
  return { type: 'explain', requestId, decisions };
}
