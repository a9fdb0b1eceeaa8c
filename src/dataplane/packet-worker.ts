/**
 * One packet worker: a capture socket, a Forwarder with its own flow table, and the timers that
 * keep them (expiry sweep, owner-query deadlines, capture statistics). The data-plane process
 * runs one in its main thread (dataplane.workers 1) or one per worker thread (worker-thread.ts),
 * and its worker pool (worker-pool.ts) talks to each the same way: `handle(message)` in, the
 * `up` callback out. Workers share the interface through one PACKET_FANOUT_HASH group, so every
 * frame of a flow reaches the same worker; what other 5-tuples need (MPTCP tokens: a join
 * hashes to another worker; client affinity) lives in shared tables the pool hands every worker.
 */
import { readFileSync } from 'node:fs';
import { Forwarder } from './forwarder.js';
import { explainQuery } from './explain.js';
import { FLOW_CLOSING } from './flow-table.js';
import { G } from './contract/counters.js';
import { COUNTER_PUBLISH_MS, SWEEP_INTERVAL_MS, SWEEP_SLOTS_PER_TICK } from './contract/limits.js';
import type { CaptureEngine } from './engine.js';
import type { DataplaneInit, DataplaneSpec } from './contract/spec.js';
import type { FlowRow, FromDataplane, OwnerEntry, ToDataplane } from './contract/messages.js';
import { workerFlowTablePath, type FlowTableOrigin } from './contract/handover.js';
import { openSharedFlowTable } from './shared-flow-table.js';
import { rebuildTokenIndex } from './flow-token-index.js';
import { BatchEngine } from './engine-batch.js';
import { CapEngine } from './engine-cap.js';
import { RingEngine } from './engine-ring.js';

/** What the pool gives one worker on top of the data plane's init. */
export interface WorkerInit {
  init: DataplaneInit;
  /** 0..count-1; worker 0 keeps the single-worker flow table file name. */
  index: number;
  count: number;
  /** PACKET_FANOUT group id shared by all workers (0: one worker, no group). */
  fanoutGroup: number;
  /** The worker's counters (COUNTER_LENGTH float64), a SharedArrayBuffer the pool reads at scrape time. */
  counters: SharedArrayBuffer | ArrayBuffer;
  /** Tables shared by all workers (absent: the worker's own). */
  sharedTokens?: SharedArrayBuffer;
  sharedAffinity?: SharedArrayBuffer;
  /**
   * Join the fanout group holding the capture (a filter that passes nothing) until `release`:
   * while the group is incomplete the kernel hashes flows over fewer members, and a worker
   * that saw another's flow would create it anew from the table pick (another backend where
   * the pick moved since: the connection breaks). Held, such frames drop and TCP resends them.
   */
  held?: boolean;
}

/** A capture filter that passes no frame (pcap: "length <= 0"). */
export const HOLD_FILTER = 'less 0';

/** Pool -> worker: the data plane's requests, plus a stop (shutdown or handover) answered by `stopped`. */
export type ToWorker =
  | { type: 'init'; worker: WorkerInit }
  | Exclude<ToDataplane, { type: 'hello' | 'init' | 'shutdown' | 'handover' | 'publish' }>
  /** Refresh the capture statistics in the counters, answer `published` (the pool then sums them). */
  | { type: 'publish'; gather: number }
  /** Leave the fanout group / join it again (behind a restarted worker, to keep the kernel's member order). */
  | { type: 'leave' }
  | { type: 'rejoin' }
  /** Hold the capture (see WorkerInit.held) while the group is being rebuilt behind a restarted worker. */
  | { type: 'hold' }
  /** Every worker has joined the group: take the filter in force (see WorkerInit.held). */
  | { type: 'release' }
  | { type: 'stop' };

/** Worker -> pool: the data plane's answers, plus `stopped` and the answer to `publish`. */
export type FromWorker =
  | Exclude<FromDataplane, { type: 'hello' | 'counters' | 'handed-over' | 'superseded' }>
  | { type: 'stopped'; flows: number }
  | { type: 'published'; gather: number }
  /** The answer to `rejoin`: this worker's socket is in the group again (the pool rejoins the next one after it). */
  | { type: 'rejoined' }
  /** Before `ready` and `rejoined`: the fd of this worker's capture socket (-1: none), which the pool keeps open too. */
  | { type: 'capture-socket'; fd: number };

/** Each worker's flow table: its share of flowTable.capacity plus 1/8 for the fanout hash's imbalance. */
export function workerFlowCapacity(capacity: number, count: number): number {
  return count <= 1 ? capacity : Math.ceil((capacity * 9) / (8 * count));
}

const PUBLISH_CHUNK = 2000;
const QUERY_EXPIRY_TICK_MS = 5;
/** How often a worker reads its own thread's CPU time (/proc/thread-self/stat). */
const THREAD_CPU_MS = 1000;

export class PacketWorker {
  readonly #up: (msg: FromWorker) => void;
  #forwarder: Forwarder | null = null;
  #worker: WorkerInit | null = null;
  #engine: CaptureEngine | null = null;
  #filter = '';
  /** The capture passes nothing yet (WorkerInit.held) until `release`. */
  #held = false;
  #timers: NodeJS.Timeout[] = [];
  #stopped = false;
  /**
   * Counter values when this capture socket (captureBase) or this thread (cpuBase) started: a
   * worker restarted on its counters, or a socket reopened to rejoin the group, starts its own
   * figures at 0, and the exported counters must not go backwards.
   */
  readonly #captureBase = new Float64Array(3);
  readonly #cpuBase = new Float64Array(2);
  /** Where frames released after an owner query are built before they are sent. */
  readonly #replayTx = Buffer.alloc(10240);
  readonly #replaySend: (len: number) => void;
  /**
   * Early fragments released by their first fragment: a buffer of their own, since the first
   * fragment may itself be a replayed frame whose output sits in replayTx until it is sent.
   */
  readonly #fragmentTx = Buffer.alloc(10240);
  readonly #fragmentSend: (len: number) => void;
  /** Entries to publish at once (learned tokens, steered joins), sent together after this turn's frames. */
  #soon: OwnerEntry[] = [];
  #soonScheduled = false;
  readonly #publishSoon = (kind: number, key: Uint8Array, backendId: number): void => {
    this.#soon.push({ kind, key, backendId });
    if (this.#soonScheduled) return;
    this.#soonScheduled = true;
    setImmediate(() => {
      this.#soonScheduled = false;
      const entries = this.#soon;
      this.#soon = [];
      if (entries.length > 0) this.#up({ type: 'owner-entries', entries });
    });
  };

  constructor(up: (msg: FromWorker) => void) {
    this.#up = up;
    this.#replaySend = this.#senderOf(this.#replayTx);
    this.#fragmentSend = this.#senderOf(this.#fragmentTx);
  }

  get forwarder(): Forwarder | null {
    return this.#forwarder;
  }

  /** Sends frames written to `buf`, counted as the engines count theirs. */
  #senderOf(buf: Buffer): (len: number) => void {
    return (len: number): void => {
      const c = this.#forwarder?.counters;
      if (!c || !this.#engine) return;
      if (this.#engine.sendFrame(buf, len)) {
        c[G.txFrames]++;
        c[G.txBytes] += len;
      } else {
        c[G.txErrors]++;
      }
    };
  }

  handle(msg: ToWorker): void {
    try {
      switch (msg.type) {
        case 'init':
          this.#start(msg.worker);
          break;
        case 'generation':
          this.#apply(msg.requestId, msg.spec);
          break;
        case 'flows':
          this.#listFlows(msg);
          break;
        case 'flow-counts':
          this.#countFlows(msg.requestId);
          break;
        case 'explain':
          this.#explain(msg);
          break;
        case 'publish':
          this.#captureStats();
          this.#up({ type: 'published', gather: msg.gather });
          break;
        case 'owner-queries': {
          const up = this.#up;
          this.#forwarder?.setOwnerQuery(msg.enabled ? (qid, kind, key, waitMs) => up({ type: 'owner-query', qid, kind, key, waitMs }) : null, msg.holdPackets);
          this.#forwarder?.setPublishNow(msg.enabled ? this.#publishSoon : null);
          break;
        }
        case 'owner-recent':
          this.#forwarder?.setChangeRecent(msg.forMs > 0 ? Date.now() + msg.forMs : 0);
          break;
        case 'owner-answer':
          this.#forwarder?.answer(msg.qid, msg.backendId, Date.now(), this.#replayTx, this.#replaySend);
          break;
        case 'publish-owners':
          this.#publishOwners();
          break;
        case 'leave':
          this.#closeEngine();
          break;
        case 'rejoin':
          if (!this.#engine && !this.#stopped) this.#openEngine();
          this.#up({ type: 'capture-socket', fd: this.#engine?.captureFd ?? -1 });
          this.#up({ type: 'rejoined' });
          break;
        case 'hold':
          if (this.#held) break;
          this.#held = true;
          this.#engine?.setFilter(HOLD_FILTER);
          break;
        case 'release':
          if (!this.#held) break;
          this.#held = false;
          this.#engine?.setFilter(this.#filter);
          break;
        case 'stop':
          this.stop();
          this.#up({ type: 'stopped', flows: this.#forwarder?.flows.size ?? 0 });
          break;
      }
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      if (msg.type === 'init') this.#up({ type: 'fatal', message });
      else if (msg.type === 'generation') this.#up({ type: 'apply-failed', requestId: msg.requestId, generation: msg.spec.generation, message });
      else if (msg.type === 'explain') this.#up({ type: 'explain-failed', requestId: msg.requestId, message });
    }
  }

  /** The flow table: the shared file's (kept across restarts) or private memory. */
  #openFlows(w: WorkerInit, capacity: number, nowMs: number): { flows: Forwarder['flows'] | undefined; origin: FlowTableOrigin } {
    const init = w.init;
    if (!init.flowTable) return { flows: undefined, origin: { attached: false, flows: 0, tokens: 0, note: 'private memory (handover off)' } };
    return openSharedFlowTable({
      path: workerFlowTablePath(init.flowTable.path, w.index),
      attach: init.flowTable.attach,
      capacity,
      timeouts: { tcpIdleMs: init.tcpIdleMs, tcpClosingMs: init.tcpClosingMs, udpIdleMs: init.udpIdleMs, halfOpenMs: init.halfOpenMs },
      hashSeed: init.spec.hashSeed,
      floodProtection: init.floodProtection,
      nowMs,
    });
  }

  #start(w: WorkerInit): void {
    if (this.#forwarder) throw new Error(`worker ${w.index} is already running`);
    const init = w.init;
    const now = Date.now();
    const capacity = workerFlowCapacity(init.flowCapacity, w.count);
    const opened = this.#openFlows(w, capacity, now);
    const forwarder = new Forwarder({
      flows: opened.flows,
      flowCapacity: capacity,
      tcpIdleMs: init.tcpIdleMs,
      tcpClosingMs: init.tcpClosingMs,
      udpIdleMs: init.udpIdleMs,
      halfOpenIdleMs: init.halfOpenMs,
      floodProtection: init.floodProtection,
      tokenCapacity: init.tokenCapacity,
      counters: new Float64Array(w.counters),
      sharedTokens: w.sharedTokens,
      sharedAffinity: w.sharedAffinity,
      sharedWriterId: w.index + 1,
    });
    forwarder.apply(init.spec);
    this.#forwarder = forwarder;
    this.#cpuBase[0] = forwarder.counters[G.workerCpuUserUs];
    this.#cpuBase[1] = forwarder.counters[G.workerCpuSystemUs];
    // MP_JOINs of connections that crossed a restart find their backend through the index.
    if (opened.origin.attached) opened.origin.tokens = rebuildTokenIndex(forwarder.flows, forwarder.tokens, now);
    // Early fragments released by their first fragment leave at once.
    forwarder.setFragmentRelease(this.#fragmentTx, this.#fragmentSend);
    this.#worker = w;
    this.#filter = init.spec.filter;
    this.#held = w.held === true;
    const engine = this.#openEngine();
    this.#timers.push(setInterval(() => forwarder.tick(Date.now(), SWEEP_SLOTS_PER_TICK), SWEEP_INTERVAL_MS));
    this.#timers.push(setInterval(() => this.#captureStats(), COUNTER_PUBLISH_MS));
    this.#timers.push(setInterval(() => this.#threadCpu(), THREAD_CPU_MS));
    // Owner answers normally arrive well within the deadline; this catches the ones that do not.
    // After a stall of this loop (a generation apply, a publish scan), timers run before pending
    // messages are read: skip one tick so answers already waiting settle their queries first.
    // One tick at most: on a starved machine every tick comes late, and skipping each one held
    // frames for seconds (TCP stalls) instead of at most the query deadline.
    let lastExpiry = Date.now();
    let skipped = false;
    this.#timers.push(
      setInterval(() => {
        const t = Date.now();
        const stalled = t - lastExpiry > 4 * QUERY_EXPIRY_TICK_MS;
        lastExpiry = t;
        if (stalled && !skipped) {
          skipped = true;
          return;
        }
        skipped = false;
        forwarder.expireQueries(t, this.#replayTx, this.#replaySend);
      }, QUERY_EXPIRY_TICK_MS),
    );
    this.#threadCpu();
    // The engine as /status and the startup log show it; a non-default transmit path is named.
    const tx = engine.transmit;
    this.#up({ type: 'capture-socket', fd: engine.captureFd ?? -1 });
    this.#up({ type: 'ready', engine: tx === undefined || tx === 'sendmmsg' ? engine.name : `${engine.name} (${tx})`, flowTable: opened.origin });
  }

  /** Open the capture (joining the fanout group) with the filter in force, and start it. */
  #openEngine(): CaptureEngine {
    const w = this.#worker;
    const forwarder = this.#forwarder;
    if (!w || !forwarder) throw new Error('the worker has not started');
    const init = w.init;
    const opts = {
      forwarder,
      interface: init.interface,
      egressInterface: init.egressInterface,
      filter: this.#held ? HOLD_FILTER : this.#filter,
      // The configured buffer is the data plane's: each worker's ring holds its share.
      bufferBytes: Math.max(1 << 20, Math.floor(init.bufferBytes / w.count)),
      batchSize: init.batchSize,
      fanoutGroup: w.fanoutGroup || undefined,
    };
    const c = forwarder.counters;
    this.#captureBase[0] = c[G.captureReceived];
    this.#captureBase[1] = c[G.captureDropped];
    this.#captureBase[2] = c[G.captureIfDropped];
    const engine = init.engine === 'cap' ? new CapEngine(opts) : init.engine === 'batch' ? new BatchEngine(opts) : new RingEngine(opts);
    this.#engine = engine;
    engine.start();
    return engine;
  }

  #closeEngine(): void {
    // Its last figures stay in the counters: the next socket counts on from them.
    if (this.#engine) this.#captureStats();
    try {
      this.#engine?.close();
    } catch {
      // closing a handle that failed to open
    }
    this.#engine = null;
  }

  #apply(requestId: number, spec: DataplaneSpec): void {
    const forwarder = this.#forwarder;
    if (!forwarder) return;
    // A worker out of the fanout group for a moment (leave) takes the filter when it rejoins;
    // a held one when it is released.
    if (spec.filter !== this.#filter) {
      if (!this.#held) this.#engine?.setFilter(spec.filter);
      this.#filter = spec.filter;
    }
    forwarder.apply(spec);
    this.#captureStats();
    this.#up({ type: 'applied', requestId, generation: spec.generation });
  }

  /** The capture engine's own statistics into the counters (the pool reads them at scrape time). */
  #captureStats(): void {
    const c = this.#forwarder?.counters;
    if (!c || !this.#engine) return;
    const s = this.#engine.stats();
    c[G.captureReceived] = this.#captureBase[0] + s.received;
    c[G.captureDropped] = this.#captureBase[1] + s.dropped;
    c[G.captureIfDropped] = this.#captureBase[2] + s.ifDropped;
  }

  /** This thread's CPU time (a worker thread's share of the process), from /proc/thread-self/stat. */
  #threadCpu(): void {
    const c = this.#forwarder?.counters;
    if (!c) return;
    try {
      const stat = readFileSync('/proc/thread-self/stat', 'latin1');
      // Fields after the command name (which may hold spaces) start after the last ')'.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime are fields 14 and 15 (1-based), in clock ticks (USER_HZ, 100 on Linux).
      c[G.workerCpuUserUs] = this.#cpuBase[0] + Number(f[11]) * 10_000;
      c[G.workerCpuSystemUs] = this.#cpuBase[1] + Number(f[12]) * 10_000;
    } catch {
      // not Linux, or /proc not mounted: the figure stays 0
    }
  }

  #publishOwners(): void {
    const forwarder = this.#forwarder;
    if (!forwarder) return;
    let chunk: OwnerEntry[] = [];
    // The token table is shared by all workers: worker 0 publishes it for them.
    const withTokens = (this.#worker?.index ?? 0) === 0;
    forwarder.publishable(Date.now(), (kind, key, backendId) => {
      chunk.push({ kind, key, backendId });
      if (chunk.length >= PUBLISH_CHUNK) {
        this.#up({ type: 'owner-entries', entries: chunk });
        chunk = [];
      }
    }, withTokens);
    if (chunk.length > 0) this.#up({ type: 'owner-entries', entries: chunk });
  }

  #listFlows(msg: Extract<ToWorker, { type: 'flows' }>): void {
    const rows: FlowRow[] = [];
    let total = 0;
    const ids = msg.backendIds ? new Set(msg.backendIds) : null;
    this.#forwarder?.flows.forEach(Date.now(), (f) => {
      if (msg.vip && f.dst !== msg.vip) return;
      if (msg.client && f.src !== msg.client) return;
      if (ids && !ids.has(f.backendId)) return;
      total++;
      if (rows.length < msg.limit) {
        rows.push({
          protocol: f.protocol === 6 ? 'tcp' : 'udp',
          client: f.src,
          clientPort: f.srcPort,
          vip: f.dst,
          port: f.dstPort,
          backendId: f.backendId,
          serviceId: f.serviceIndex,
          ageMs: f.ageMs,
          idleMs: f.idleMs,
          state: f.state,
        });
      }
    });
    this.#up({ type: 'flows', requestId: msg.requestId, rows, total });
  }

  /** Live flows per backend id, and how many of them are TCP-closing. */
  #countFlows(requestId: number): void {
    const counts = new Map<number, number>();
    const closing = new Map<number, number>();
    const flows = this.#forwarder?.flows;
    flows?.forEachSlot((slot) => {
      const b = flows.backendOf(slot);
      counts.set(b, (counts.get(b) ?? 0) + 1);
      if (flows.stateOf(slot) === FLOW_CLOSING) closing.set(b, (closing.get(b) ?? 0) + 1);
    }, Date.now());
    this.#up({ type: 'flow-counts', requestId, counts, closing });
  }

  /** `sluice explain`: the forwarder's decision for a tuple, read without side effects. */
  #explain(msg: Extract<ToWorker, { type: 'explain' }>): void {
    if (!this.#forwarder) {
      this.#up({ type: 'explain-failed', requestId: msg.requestId, message: 'the data plane has no forwarder yet' });
      return;
    }
    this.#up({ type: 'explain', requestId: msg.requestId, decisions: explainQuery(this.#forwarder, msg.query, Date.now()) });
  }

  /** Stop capturing and every timer: no write to the flow table after this. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#closeEngine();
  }
}
